import { createHash } from 'node:crypto';

/**
 * A stored user is one string key: `<version>:<json>`; a tombstone is `<version>:` with nothing after the colon
 * (live user data is a JSON object, never empty). Scripts read only the head of the value (GETRANGE 0 20), so a
 * version check costs the same for 1 KB and 1 MB of user data.
 */

/**
 * Versioned save of one or more keys (all in one Cluster slot).
 * KEYS: the users' keys. ARGV[1]: TTL in milliseconds, '0' for none; then per key: expected version ('' for an
 * unconditional write) and the JSON.
 * Returns one entry per key: the new version (> 0) when written; minus the live stored version (0 when none)
 * on conflict; an error reply when the store refused that key. `redis.pcall` keeps one key's failure (a key of
 * another type, out of memory) from aborting the others.
 */
export const SAVE_SCRIPT = `
local ttl = ARGV[1]
local results = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local head = redis.pcall('GETRANGE', key, 0, 20)
  if type(head) == 'table' then
    results[i] = head
  else
    local stored, live, digits = 0, false, ''
    if head ~= '' then
      digits = string.match(head, '^(%d+):')
      if digits then
        stored = tonumber(digits)
        live = #head > #digits + 1
      end
    end
    if not digits then
      results[i] = { err = 'CAGEY_FOREIGN_VALUE ' .. key .. ' holds a value not written by cagey-sessions' }
    else
      local expected = ARGV[2 * i]
      local conflict = false
      if expected ~= '' then
        local n = tonumber(expected)
        if n == 0 then conflict = live else conflict = (not live) or stored ~= n end
      end
      if conflict then
        if live then results[i] = -stored else results[i] = 0 end
      else
        local version = stored + 1
        local value = string.format('%d', version) .. ':' .. ARGV[2 * i + 1]
        local reply
        if ttl ~= '0' then
          reply = redis.pcall('SET', key, value, 'PX', ttl)
        else
          reply = redis.pcall('SET', key, value)
        end
        if type(reply) == 'table' and reply.err then results[i] = reply else results[i] = version end
      end
    end
  end
end
return results
`;

/**
 * Delete of one key, leaving a tombstone that holds the next version.
 * KEYS[1]: the user's key. ARGV[1]: TTL in milliseconds, '0' for none. ARGV[2]: expected version or ''.
 * Returns 1 when deleted, 0 when there was no live record, minus the live version on conflict.
 */
export const DELETE_SCRIPT = `
local head = redis.call('GETRANGE', KEYS[1], 0, 20)
if head == '' then return 0 end
local digits = string.match(head, '^(%d+):')
if not digits then
  return redis.error_reply('CAGEY_FOREIGN_VALUE ' .. KEYS[1] .. ' holds a value not written by cagey-sessions')
end
if #head == #digits + 1 then return 0 end
local stored = tonumber(digits)
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= stored then return -stored end
local tombstone = string.format('%d', stored + 1) .. ':'
if ARGV[1] ~= '0' then
  redis.call('SET', KEYS[1], tombstone, 'PX', ARGV[1])
else
  redis.call('SET', KEYS[1], tombstone)
end
return 1
`;

export interface Script {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

export const saveScript = script(SAVE_SCRIPT);
export const deleteScript = script(DELETE_SCRIPT);
export const scripts: readonly Script[] = [saveScript, deleteScript];

/** Parses a stored value; `undefined` for a tombstone. Throws when the value is not in the adapter's layout. */
export function parseStoredValue(value: string): { json: string; version: number } | undefined {
  const separator = value.indexOf(':');
  const version = separator > 0 && separator <= 16 ? Number(value.slice(0, separator)) : Number.NaN;
  if (!Number.isSafeInteger(version) || version < 0 || !/^\d+$/.test(value.slice(0, separator))) {
    throw new Error('the stored value is not in the "<version>:<json>" layout written by this adapter');
  }
  if (separator === value.length - 1) return undefined;
  return { json: value.slice(separator + 1), version };
}

import { createHash } from 'node:crypto';

/**
 * A stored user is one string key holding `<version>:<writeId>:<json>`, or `<version>:<json>` when the write
 * carried no write id (and in values written before write ids existed); a tombstone is `<version>:` with nothing
 * after the colon. The JSON is always an object, so it starts with `{`, and a write id (at most 64 characters of
 * `[A-Za-z0-9._-]`) never does: after `<digits>:` a `{` means "no write id". Scripts read only the head of the
 * value (GETRANGE 0 127: the longest version, write id and both colons fit), so a version check costs the same for
 * 1 KB and 1 MB of user data.
 */

/** Bytes of a value the scripts read: 20 digits + `:` + 64-character write id + `:` + `{`, rounded up. */
export const HEAD_BYTES = 128;
/** Longest version a value may carry in its head (Lua and JavaScript both count it exactly below 2^53). */
const MAX_VERSION_DIGITS = 16;
const MAX_WRITE_ID_LENGTH = 64;

/**
 * Lua shared by both scripts: parses a value's head. Returns nil for a value this adapter did not write, else
 * the stored version (0 when the key does not exist), whether a live record is stored, and its write id.
 * `version_reply` answers a version as a decimal string: clients decode integer replies near 2^53 inexactly
 * (ioredis 6 reads 9007199254740991 as 9007199254740992), strings are exact.
 */
const PARSE_HEAD = `
local function version_reply(version)
  return string.format('%d', version)
end

local function parse_head(head)
  if head == '' then return 0, false, nil end
  local digits, rest = string.match(head, '^(%d+):(.*)$')
  if not digits or #digits > ${MAX_VERSION_DIGITS} then return nil end
  local stored = tonumber(digits)
  if rest == '' then return stored, false, nil end
  if string.sub(rest, 1, 1) == '{' then return stored, true, nil end
  local write_id = string.match(rest, '^([A-Za-z0-9._%-]+):{')
  if write_id and #write_id <= ${MAX_WRITE_ID_LENGTH} then return stored, true, write_id end
  return nil
end
`;

/** Error reply of a key holding a string this adapter did not write; the adapter names the user in its message. */
export const FOREIGN_VALUE = 'CAGEY_FOREIGN_VALUE';

/**
 * Versioned save of one or more keys (all in one Cluster slot).
 * KEYS: the users' keys. ARGV[1]: TTL in milliseconds, '0' for none; then per key: expected version ('' for an
 * unconditional write) and the payload, `<writeId>:<json>` or `<json>`.
 * Returns one entry per key, versions as decimal strings: the new version (> 0) when written; on conflict '0'
 * when no live record exists, minus the live stored version when it has no write id, or the pair {minus the
 * live version, its write id}; an error reply when the store refused that key. `redis.pcall` keeps one key's failure (a key of another type,
 * out of memory) from aborting the others.
 */
export const SAVE_SCRIPT = `${PARSE_HEAD}
local ttl = ARGV[1]
local results = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local head = redis.pcall('GETRANGE', key, 0, ${HEAD_BYTES - 1})
  if type(head) == 'table' then
    results[i] = head
  else
    local stored, live, write_id = parse_head(head)
    if not stored then
      results[i] = { err = '${FOREIGN_VALUE} the key holds a value not written by cagey-sessions' }
    else
      local expected = ARGV[2 * i]
      local conflict = false
      if expected ~= '' then
        local n = tonumber(expected)
        if n == 0 then conflict = live else conflict = (not live) or stored ~= n end
      end
      if conflict then
        if not live then
          results[i] = version_reply(0)
        elseif write_id then
          results[i] = { version_reply(-stored), write_id }
        else
          results[i] = version_reply(-stored)
        end
      else
        local version = stored + 1
        local value = string.format('%d', version) .. ':' .. ARGV[2 * i + 1]
        local reply
        if ttl ~= '0' then
          reply = redis.pcall('SET', key, value, 'PX', ttl)
        else
          reply = redis.pcall('SET', key, value)
        end
        if type(reply) == 'table' and reply.err then results[i] = reply else results[i] = version_reply(version) end
      end
    end
  end
end
return results
`;

/**
 * Delete of one key, leaving a tombstone that holds the next version (and no write id).
 * KEYS[1]: the user's key. ARGV[1]: TTL in milliseconds, '0' for none. ARGV[2]: expected version or ''.
 * Returns 1 when deleted, 0 when there was no live record, minus the live version (a decimal string) on conflict.
 */
export const DELETE_SCRIPT = `${PARSE_HEAD}
local stored, live = parse_head(redis.call('GETRANGE', KEYS[1], 0, ${HEAD_BYTES - 1}))
if not stored then
  return redis.error_reply('${FOREIGN_VALUE} the key holds a value not written by cagey-sessions')
end
if not live then return 0 end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= stored then return version_reply(-stored) end
local tombstone = string.format('%d', stored + 1) .. ':'
if ARGV[1] ~= '0' then
  redis.call('SET', KEYS[1], tombstone, 'PX', ARGV[1])
else
  redis.call('SET', KEYS[1], tombstone)
end
return 1
`;

/**
 * Versioned restore of one or more keys (all in one Cluster slot): each key is written at exactly the given
 * version when it holds nothing or an older version (live or tombstone).
 * KEYS: the users' keys. ARGV[1]: TTL in milliseconds, '0' for none; then per key: the version (a decimal
 * string) and the payload, `<writeId>:<json>` or `<json>`.
 * Returns one entry per key, in the save script's form: the version when written; on conflict '0' when no
 * live record exists, minus the live version when it has no write id, or the pair {minus the live version, its
 * write id}; an error reply when the store refused that key.
 */
export const RESTORE_SCRIPT = `${PARSE_HEAD}
local ttl = ARGV[1]
local results = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local head = redis.pcall('GETRANGE', key, 0, ${HEAD_BYTES - 1})
  if type(head) == 'table' then
    results[i] = head
  else
    local stored, live, write_id = parse_head(head)
    local version = ARGV[2 * i]
    if not stored then
      results[i] = { err = '${FOREIGN_VALUE} the key holds a value not written by cagey-sessions' }
    elseif stored >= tonumber(version) then
      if not live then
        results[i] = version_reply(0)
      elseif write_id then
        results[i] = { version_reply(-stored), write_id }
      else
        results[i] = version_reply(-stored)
      end
    else
      local value = version .. ':' .. ARGV[2 * i + 1]
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
return results
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
export const restoreScript = script(RESTORE_SCRIPT);
export const scripts: readonly Script[] = [saveScript, deleteScript, restoreScript];

/** The value the save script stores after `<version>:` for a record. */
export function payloadOf(json: string, writeId: string | undefined): string {
  return writeId === undefined ? json : `${writeId}:${json}`;
}

export interface StoredValue {
  version: number;
  json: string;
  /** The write id stored with the record; undefined in values written without one. */
  writeId: string | undefined;
}

const HEAD = /^(\d{1,16}):/;
const WRITE_ID = /^([A-Za-z0-9._-]{1,64}):\{/;

/**
 * Parses a stored value; `undefined` for a tombstone. Throws when the value is not in the adapter's layout.
 * Values written before write ids existed (`<version>:<json>`) parse with `writeId` undefined.
 */
export function parseStoredValue(value: string): StoredValue | undefined {
  const head = HEAD.exec(value);
  const version = head ? Number(head[1]) : Number.NaN;
  if (!head || !Number.isSafeInteger(version)) throw notOurs();
  const rest = value.slice(head[0].length);
  if (rest === '') return undefined;
  if (rest.startsWith('{')) return { version, json: rest, writeId: undefined };
  const writeId = WRITE_ID.exec(rest)?.[1];
  if (writeId === undefined) throw notOurs();
  return { version, json: rest.slice(writeId.length + 1), writeId };
}

function notOurs(): Error {
  return new Error(
    'the stored value is not in the "<version>:[<writeId>:]<json>" layout written by this adapter',
  );
}

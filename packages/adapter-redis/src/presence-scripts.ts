import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

/**
 * Lua scripts of the presence. Each touches keys of one Cluster slot only (one key, or users grouped by slot),
 * so each runs atomically on one node; see `RedisPresence.claim` for why a claim made of several of them is
 * still race-free.
 */
export interface PresenceScript {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): PresenceScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** `claim` replies: the user was free, already held by the caller, or taken over from `ARGV[2]`. */
export const CLAIM_FREE = 1;
export const CLAIM_HELD = 2;
export const CLAIM_TAKEN = 3;

/**
 * Claims one user key. KEYS[1]: the user's key. ARGV[1]: the caller's record (`<token>:<nodeId>`). ARGV[2]: the
 * record of a holder the caller found dead, or '' on a first attempt.
 * Sets the key when it is missing (CLAIM_FREE) or holds exactly ARGV[2] (CLAIM_TAKEN); answers CLAIM_HELD when
 * it holds ARGV[1] already; otherwise changes nothing and answers the record it holds.
 */
export const claimScript = script(`
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1])
  return ${CLAIM_FREE}
end
if current == ARGV[1] then return ${CLAIM_HELD} end
if ARGV[2] ~= '' and current == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1])
  return ${CLAIM_TAKEN}
end
return current
`);

/**
 * Deletes the user keys that hold ARGV[1] (the caller's record); others are untouched. KEYS: user keys of one
 * slot. `redis.pcall`: a key of another type is skipped instead of aborting the rest. Returns how many it deleted.
 */
export const releaseScript = script(`
local deleted = 0
for i = 1, #KEYS do
  if redis.pcall('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    deleted = deleted + 1
  end
end
return deleted
`);

/**
 * Extends a lease. KEYS[1]: the node's lease key. ARGV[1]: the incarnation's token. ARGV[2]: the TTL in
 * milliseconds. 1 when the key held the token (and now expires ARGV[2] ms from the server's now), else 0.
 */
export const renewScript = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`);

/** Ends a lease: deletes KEYS[1] when it holds the token ARGV[1]. 1 when it did, else 0. */
export const leaveScript = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`);

/**
 * Runs a script by its SHA1, sending its source when the server does not have it (first use, `SCRIPT FLUSH`, a
 * restart, a failover). A NOSCRIPT reply means the script did not run, so sending it again cannot run it twice.
 */
export async function runScript(
  client: Redis | Cluster,
  { lua, sha }: PresenceScript,
  keys: readonly string[],
  args: readonly string[],
): Promise<unknown> {
  try {
    return await client.evalsha(sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error;
    return await client.eval(lua, keys.length, ...keys, ...args);
  }
}

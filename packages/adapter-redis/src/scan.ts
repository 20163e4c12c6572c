import {
  AdapterError,
  type ScannedUser,
  type ScanOptions,
  type ScanPage,
  type UserData,
} from '@cagey-sessions/core';
import { encodeCursor, parseScanOptions, type ScanRequest } from '@cagey-sessions/core/adapter-kit';
import type { Cluster, Redis } from 'ioredis';
import { isCluster } from './connection.js';
import { decodeUserKey, encodeUserKey } from './keys.js';
import { parseStoredValue } from './scripts.js';

const ADAPTER_NAME = 'redis';
/** Users in a `scan` page when the caller gives no `limit`. */
export const DEFAULT_SCAN_LIMIT = 1000;
/** The most users a `scan` page holds; a larger `limit` is lowered to this. */
export const MAX_SCAN_LIMIT = 10_000;
/** `SCAN … COUNT` bounds: small pages still walk the keyspace in useful steps, large ones in bounded steps. */
const MIN_SCAN_COUNT = 100;
const MAX_SCAN_COUNT = 1000;
/**
 * `SCAN` calls one page may make. A prefix that holds few of the keys (a shared database) can make many calls
 * find nothing; the page then ends early, possibly empty, and the cursor goes on from there.
 */
const SCAN_CALLS_PER_PAGE = 32;

/**
 * Where a listing stands: the master being scanned (its `host:port`, '' on a standalone server), that node's
 * `SCAN` cursor ('0' before its first call, 'end' after its last), and user keys found there but not yet listed
 * (a `SCAN` reply may hold more keys than the page had room for).
 */
interface Position {
  node: string;
  cursor: string;
  found: string[];
}

interface ScanNode {
  id: string;
  client: Redis;
}

function readPosition(value: unknown): Position | undefined {
  if (!Array.isArray(value) || value.length !== 3) return undefined;
  const [node, cursor, found] = value as unknown[];
  if (typeof node !== 'string' || typeof cursor !== 'string' || !/^(\d{1,20}|end)$/.test(cursor))
    return undefined;
  if (!Array.isArray(found) || !found.every((key) => typeof key === 'string' && key !== '')) return undefined;
  return { node, cursor, found: found as string[] };
}

/** `SCAN` patterns treat these as wildcards; a client `keyPrefix` holding one is matched literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * Lists the users under one key prefix a page at a time: `SCAN MATCH` on each master in address order, values
 * read in a pipeline per node, tombstones and keys of other layouts skipped.
 */
export class KeyScanner {
  readonly #client: Redis | Cluster;
  readonly #keyPrefix: string;
  /** What the client prepends itself (ioredis `keyPrefix`): part of what `SCAN` returns and matches. */
  readonly #clientKeyPrefix: string;
  readonly #pattern: string;

  constructor(client: Redis | Cluster, keyPrefix: string, clientKeyPrefix: string) {
    this.#client = client;
    this.#keyPrefix = keyPrefix;
    this.#clientKeyPrefix = clientKeyPrefix;
    this.#pattern = `${escapeGlob(clientKeyPrefix)}${keyPrefix}*`;
  }

  /** Checks `scan`'s options (INVALID_OPTIONS, INVALID_CURSOR). */
  parse(options: ScanOptions | undefined): ScanRequest<Position> {
    return parseScanOptions(ADAPTER_NAME, options, {
      defaultLimit: DEFAULT_SCAN_LIMIT,
      maxLimit: MAX_SCAN_LIMIT,
      readPosition,
    });
  }

  async page({ position, limit }: ScanRequest<Position>): Promise<ScanPage> {
    const nodes = await this.#nodes();
    let at: Position;
    if (position === undefined) {
      at = { node: nodes[0]!.id, cursor: '0', found: [] };
    } else {
      at = { ...position, found: [...position.found] };
      if (!nodes.some((node) => node.id === at.node)) throw nodeGone(at.node);
    }
    const count = Math.min(Math.max(limit, MIN_SCAN_COUNT), MAX_SCAN_COUNT);
    const taken: { node: string; keys: string[] }[] = [];
    // SCAN may return a key again in a later reply: never list a user twice in one page.
    const inPage = new Set<string>();
    let wanted = limit;
    let calls = 0;
    let done = false;
    while (wanted > 0) {
      if (at.found.length > 0) {
        const keys = at.found.splice(0, wanted).filter((key) => !inPage.has(key));
        for (const key of keys) inPage.add(key);
        taken.push({ node: at.node, keys });
        wanted -= keys.length;
        continue;
      }
      if (at.cursor === 'end') {
        const next = nodes.find((node) => node.id > at.node);
        if (next === undefined) {
          done = true;
          break;
        }
        at = { node: next.id, cursor: '0', found: [] };
      }
      if (calls === SCAN_CALLS_PER_PAGE) break;
      calls++;
      const node = nodes.find((n) => n.id === at.node)!;
      const [cursor, keys] = await node.client.scan(at.cursor, 'MATCH', this.#pattern, 'COUNT', count);
      at.found = [...new Set(keys.map((key) => this.#userKeyOf(key)))].filter(
        (key): key is string => key !== undefined,
      );
      at.cursor = cursor === '0' ? 'end' : cursor;
    }
    if (!done && at.cursor === 'end' && at.found.length === 0 && !nodes.some((node) => node.id > at.node)) {
      done = true;
    }
    const users = (await Promise.all(taken.map(({ keys }) => this.#read(keys)))).flat();
    return { users, cursor: done ? undefined : encodeCursor(ADAPTER_NAME, [at.node, at.cursor, at.found]) };
  }

  /** The masters in address order: a standalone server is one node. */
  async #nodes(): Promise<ScanNode[]> {
    if (!isCluster(this.#client)) return [{ id: '', client: this.#client as Redis }];
    const cluster = this.#client as Cluster;
    if (cluster.slots.length === 0) await cluster.pipeline().exec();
    const masters = cluster
      .nodes('master')
      .map((client) => ({ id: `${client.options.host}:${client.options.port}`, client }));
    if (masters.length === 0) throw new Error('the Cluster has no reachable master');
    return masters.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The user key of a key `SCAN` returned, or `undefined` for a key of another layout under the prefix. */
  #userKeyOf(key: string): string | undefined {
    const start = this.#clientKeyPrefix.length + this.#keyPrefix.length;
    return decodeUserKey(key.slice(start));
  }

  /** Reads the users (of one node) in one pipeline; deleted and expired ones are left out. */
  async #read(userKeys: string[]): Promise<ScannedUser[]> {
    const pipeline = this.#client.pipeline();
    for (const key of userKeys) pipeline.get(this.#keyPrefix + encodeUserKey(key));
    const replies = (await pipeline.exec()) ?? [];
    const users: ScannedUser[] = [];
    for (let i = 0; i < userKeys.length; i++) {
      const [error, value] = replies[i] ?? [new Error('the pipeline returned no reply'), null];
      if (error) throw error;
      if (typeof value !== 'string') continue; // expired or deleted since SCAN found it
      const userId = userKeys[i]!;
      let stored: ReturnType<typeof parseStoredValue>;
      try {
        stored = parseStoredValue(value);
      } catch (cause) {
        throw new AdapterError(
          ADAPTER_NAME,
          `scan failed: the key of user ${JSON.stringify(userId.slice(0, 64))} holds a value this adapter did ` +
            'not write. Remove it or use another prefix.',
          { cause },
        );
      }
      if (stored === undefined) continue;
      users.push({ userId, userData: JSON.parse(stored.json) as UserData, version: stored.version });
    }
    return users;
  }
}

function nodeGone(node: string): AdapterError {
  return new AdapterError(
    ADAPTER_NAME,
    `scan failed: the cursor names the Cluster master ${node}, which is no longer a master (a failover or a ` +
      'resharding happened during the listing). Start the listing again without a cursor.',
  );
}

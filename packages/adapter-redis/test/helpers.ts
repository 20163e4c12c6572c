import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { inject } from 'vitest';

/** The standalone server's URL, or null after a loud warning when redis-server is not installed. */
export function standaloneUrl(): string | null {
  const url = inject('redisUrl');
  if (!url) warnMissing('standalone Redis');
  return url;
}

/** The Cluster's `redis+cluster://` URL, or null after a loud warning when it could not be started. */
export function clusterUrl(): string | null {
  const url = inject('redisClusterUrl');
  if (!url) warnMissing('Redis Cluster');
  return url;
}

function warnMissing(what: string): void {
  console.warn(
    `\n!!! ${what} tests of @cagey-sessions/adapter-redis are SKIPPED: redis-server / redis-cli are not ` +
      'installed.\n!!! Install them with `bash tools/test-servers/install-servers.sh` (CI fails instead of skipping).\n',
  );
}

/** A fresh key prefix per test, so runs and tests never see each other's keys. */
export function randomPrefix(label = 't'): string {
  return `${label}_${randomBytes(5).toString('hex')}:`;
}

/** A raw client for reading what Redis really holds, independent of the adapter under test. */
export function rawClient(url: string): Redis | Cluster {
  if (url.startsWith('redis+cluster://')) {
    const nodes = url
      .slice('redis+cluster://'.length)
      .split(',')
      .map((node) => {
        const [host, port] = node.split(':');
        return { host: host!, port: Number(port) };
      });
    return new Cluster(nodes);
  }
  return new Redis(url);
}

/** The key layout, written out independently of the adapter's code: prefix + encodeURIComponent(user key). */
export function rawKey(prefix: string, userId: string | number): string {
  return prefix + encodeURIComponent(String(userId));
}

/**
 * Reads `<version>:<writeId>:<json>` or `<version>:<json>` (the layout, written out independently of the
 * adapter's code); undefined for a missing key or a tombstone.
 */
export async function readRaw(
  client: Redis | Cluster,
  key: string,
): Promise<{ userData: unknown; version: number } | undefined> {
  const value = await client.get(key);
  if (value === null) return undefined;
  const parsed = parseRaw(value);
  if (!parsed)
    throw new Error(`${key} does not hold a <version>:[<writeId>:]<json> value: ${value.slice(0, 40)}`);
  if (parsed.json === '') return undefined;
  return { userData: JSON.parse(parsed.json), version: parsed.version };
}

/** The write id stored with a user's record; undefined when the record has none (or is missing, or a tombstone). */
export async function rawWriteId(client: Redis | Cluster, key: string): Promise<string | undefined> {
  const value = await client.get(key);
  return value === null ? undefined : parseRaw(value)?.writeId;
}

function parseRaw(value: string): { version: number; writeId?: string; json: string } | undefined {
  const match = /^(\d+):(?:([A-Za-z0-9._-]{1,64}):(?=\{))?([\s\S]*)$/.exec(value);
  if (!match) return undefined;
  return {
    version: Number(match[1]),
    ...(match[2] === undefined ? {} : { writeId: match[2] }),
    json: match[3]!,
  };
}

/** The raw version stored at a key, tombstones included; undefined when the key does not exist. */
export async function rawVersion(client: Redis | Cluster, key: string): Promise<number | undefined> {
  const value = await client.get(key);
  return value === null ? undefined : Number(value.slice(0, value.indexOf(':')));
}

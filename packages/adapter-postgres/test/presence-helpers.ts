import type { PresenceMessage } from '@cagey-sessions/core';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, expect } from 'vitest';
import { type PostgresClient, PostgresPresence } from '../src/index.js';
import { newPool } from './helpers.js';

/** Where a test file's presences live: each `presence()` is one node's process (own pool, own listener). */
export interface PresenceWorld {
  /** A new presence over `table`, setup() done; closed after the file. */
  presence(table: string): Promise<PostgresPresence>;
  /** Reads and writes the tables directly, bypassing the presences under test. */
  raw: PostgresClient;
  /** The pg.Pool or PGlite behind `raw`, to inject into a presence (available once the tests run). */
  client(): PostgresClient;
}

/** Opens the world before the calling file's tests and closes everything after them. */
export function presenceWorld(kind: 'server' | 'pglite', url: string | null): PresenceWorld {
  const opened: PostgresPresence[] = [];
  let raw: (PostgresClient & { end?(): Promise<void>; close?(): Promise<void> }) | undefined;
  beforeAll(async () => {
    if (kind === 'pglite') raw = await PGlite.create();
    else if (url !== null) raw = newPool(url);
  });
  afterAll(async () => {
    await Promise.allSettled(opened.map((presence) => presence.close()));
    await (raw?.end?.() ?? raw?.close?.());
  });
  return {
    async presence(table) {
      const presence =
        kind === 'pglite'
          ? new PostgresPresence({ client: raw!, table })
          : new PostgresPresence({ url: url!, table, clientOptions: { max: 2 } });
      opened.push(presence);
      await presence.setup();
      return presence;
    },
    raw: { query: (text, values) => raw!.query(text, values) },
    client: () => raw!,
  };
}

/** The holder recorded for a user, read directly. */
export async function holderRow(
  raw: PostgresClient,
  table: string,
  userId: string,
): Promise<{ node_id: string; token: string } | undefined> {
  const { rows } = await raw.query(`SELECT node_id, token FROM "${table}_users" WHERE user_id = $1`, [
    userId,
  ]);
  return rows[0] as { node_id: string; token: string } | undefined;
}

/** The current incarnation's token of a node, read directly. */
export async function tokenOf(
  raw: PostgresClient,
  table: string,
  nodeId: string,
): Promise<string | undefined> {
  const { rows } = await raw.query(`SELECT token FROM "${table}_nodes" WHERE node_id = $1`, [nodeId]);
  return (rows[0] as { token: string } | undefined)?.token;
}

/** Ends a node's lease (renewed to 1 ms) and waits until the database sees it expired. */
export async function expireLease(
  presence: PostgresPresence,
  raw: PostgresClient,
  table: string,
  nodeId: string,
): Promise<void> {
  expect(await presence.renew(nodeId, 1)).toBe(true);
  await expect
    .poll(
      async () =>
        (
          await raw.query(
            `SELECT expires_at <= clock_timestamp() AS expired FROM "${table}_nodes" WHERE node_id = $1`,
            [nodeId],
          )
        ).rows[0],
      { timeout: 10_000, interval: 5 },
    )
    .toEqual({ expired: true });
}

/** Collects the messages a node receives. */
export function inbox(): { messages: PresenceMessage[]; onMessage: (message: PresenceMessage) => void } {
  const messages: PresenceMessage[] = [];
  return { messages, onMessage: (message) => messages.push(message) };
}

export const message = (userId: string, from = 'sender'): PresenceMessage => ({
  type: 'release',
  userId,
  from,
});

/** `client` with its `query` calls counted (everything else passes through unchanged). */
export function counting(client: PostgresClient): { client: PostgresClient; statements: string[] } {
  const statements: string[] = [];
  const proxy = new Proxy(client, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (property === 'query') {
        return (text: string, values?: unknown[]) => {
          statements.push(text);
          return target.query(text, values);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { client: proxy, statements };
}

/**
 * Sends until the receiver has the message: a notification sent while the listening connection is away is lost
 * (the contract allows it), so the first sends after a restart may go nowhere. Bounded: the listener retries
 * with at most 5 s between attempts.
 */
export async function sendUntilReceived(
  sender: PostgresPresence,
  nodeId: string,
  received: PresenceMessage[],
  userId: string,
): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    try {
      await sender.send(nodeId, message(userId));
    } catch {
      // The sender's pool may hold connections the restart broke; each fails once.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    if (received.some((m) => m.userId === userId)) return;
  }
  throw new Error(`${nodeId} never received ${userId}`);
}

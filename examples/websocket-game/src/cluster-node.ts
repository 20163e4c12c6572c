/**
 * What one game server needs to run beside others (`serve.ts --presence`): the presence they share, and a log
 * of every session's life and every handoff on the machine's clock, which the demo reads (`pnpm demo --nodes 3`)
 * to count handoffs, their latency, and players live on two servers at once.
 */
import { subscribe } from 'node:diagnostics_channel';
import { closeSync, openSync, writeSync } from 'node:fs';
import type { HandoffMessage, Presence, SessionManager } from '@cagey-sessions/core';
import { UsageError } from './cli.js';
import type { ClusterOptions } from './server.js';

export const PRESENCE_KINDS = ['redis', 'postgres'] as const;
export type PresenceKind = (typeof PRESENCE_KINDS)[number];

/** Where each presence reads its URL from: `PRESENCE_URL`, else the variable its store kind uses. */
export const PRESENCE_URL_VARIABLES: Record<PresenceKind, readonly string[]> = {
  redis: ['PRESENCE_URL', 'REDIS_URL'],
  postgres: ['PRESENCE_URL', 'DATABASE_URL'],
};

export function isPresenceKind(value: string): value is PresenceKind {
  return (PRESENCE_KINDS as readonly string[]).includes(value);
}

/** One line of the life log (JSON). `at` is `performance.timeOrigin + performance.now()`. */
export type LifeLine =
  | { event: 'start' | 'end'; node: string; userId: string; life: number; at: number }
  | { event: 'handoff'; node: string; userId: string; from: string; outcome: string; ms: number; at: number };

export interface ClusterNode {
  options: ClusterOptions;
  /** Starts logging the manager's sessions and handoffs to the life log, if one was asked for. */
  watch<T extends object>(manager: SessionManager<T>): void;
  /** Closes the presence and the log (after the manager's shutdown). */
  close(): Promise<void>;
}

export interface ClusterNodeConfig {
  presence: PresenceKind;
  nodeId: string;
  /** Names the presence's keys (`<namespace>:presence:`) or tables (`<namespace>_presence_*`). */
  namespace: string;
  leaseTtlMs?: number;
  handoffTimeoutMs?: number;
  /** Appends the life log here. */
  livesLog?: string;
  env?: NodeJS.ProcessEnv;
}

export async function openClusterNode(config: ClusterNodeConfig): Promise<ClusterNode> {
  const env = config.env ?? process.env;
  const variables = PRESENCE_URL_VARIABLES[config.presence];
  const url = variables.map((name) => env[name]).find((value) => value !== undefined && value !== '');
  if (url === undefined) {
    throw new UsageError(`--presence ${config.presence} needs a URL: set ${variables.join(' or ')}.`);
  }
  let presence: Presence & { setup?(): Promise<void> };
  if (config.presence === 'redis') {
    const { RedisPresence } = await import('@cagey-sessions/adapter-redis');
    presence = new RedisPresence({ url, prefix: `${config.namespace}:presence:` });
  } else {
    const { PostgresPresence } = await import('@cagey-sessions/adapter-postgres');
    presence = new PostgresPresence({ url, table: `${config.namespace}_presence` });
  }
  try {
    await presence.setup?.();
  } catch (error) {
    await presence.close().catch(() => {});
    throw error;
  }
  const fd = config.livesLog === undefined ? undefined : openSync(config.livesLog, 'a');
  // Written synchronously: a line logged just before a crash is not lost.
  const write = (line: LifeLine) => {
    if (fd !== undefined) writeSync(fd, `${JSON.stringify(line)}\n`);
  };
  const node = config.nodeId;
  const now = () => performance.timeOrigin + performance.now();
  return {
    options: {
      presence,
      nodeId: node,
      ...(config.leaseTtlMs === undefined ? {} : { leaseTtl: config.leaseTtlMs }),
      ...(config.handoffTimeoutMs === undefined ? {} : { handoffTimeout: config.handoffTimeoutMs }),
    },
    watch(manager) {
      if (fd === undefined) return;
      const lives = new WeakMap<object, number>();
      let next = 0;
      manager.on('identified', (session, userId) => {
        const life = ++next;
        lives.set(session, life);
        write({ event: 'start', node, userId: String(userId), life, at: now() });
      });
      manager.on('destroy', (session) => {
        const life = lives.get(session);
        if (life === undefined) return;
        lives.delete(session);
        write({ event: 'end', node, userId: String(session.userId), life, at: now() });
      });
      // Core's handoff channel: a login here that met another server holding the player.
      subscribe('cagey-sessions:handoff', (message) => {
        const handoff = message as HandoffMessage;
        if (handoff.manager !== manager) return;
        const { userId, from, outcome, durationMs: ms } = handoff;
        write({ event: 'handoff', node, userId, from, outcome, ms, at: now() });
      });
    },
    async close() {
      await presence.close().catch(() => {});
      if (fd !== undefined) closeSync(fd);
    },
  };
}

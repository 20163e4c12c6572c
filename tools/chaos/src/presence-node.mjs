/**
 * A game-server node of a cluster that shares one store and one presence, written the way a user writes one:
 * plain JavaScript, the packages as installed (their built `dist`), `create({ log, adapter }, { presence, nodeId,
 * leaseTtl, handoffTimeout })`, and a `kicked` listener that closes the player's connection. The chaos runner
 * starts it with `fork()` and drives it over IPC, like `game-server.mjs`:
 *
 *   parent -> child  { id, cmd, ...args }
 *   child -> parent  { id, ok: true, result } | { id, ok: false, error: { name, code, message, phase } }
 *                    { event: 'ready', pid }
 *
 * Configuration comes as JSON in CHAOS_GAME_CONFIG: `{ node, store, url, namespace, persistence, presence: {
 * kind, url, name, leaseTtl, handoffTimeout } }`.
 *
 * Every session's life is logged on stdout as JSON: `{ msg: 'life', event: 'start' | 'end', userId, life, at }`
 * with `at` on the machine's clock (`performance.timeOrigin + performance.now()`, comparable between processes),
 * `start` when the session is identified (the `identified` event) and `end` when it is destroyed (the manager's
 * `destroy` event, after any `kicked`): the runner checks from these lines alone that no user ever had two live
 * sessions at once.
 *
 * Player data is `{ counter }`; `play` adds one and calls `persistNow()`, and answers only once it resolved.
 */
import { performance } from 'node:perf_hooks';
import { create } from '@cagey-sessions/core';
import {
  config,
  exitAfterLifetime,
  jsonLines,
  oneAtATimePerUser,
  openAdapter,
  serialise,
  serveCommands,
} from './game-process.mjs';

const node = String(config.node ?? 'node');
const now = () => performance.timeOrigin + performance.now();
const lines = jsonLines(node);
const { write } = lines;
// The library logs each kick at info; the life lines say the same with a timestamp, so info stays quiet.
const log = { ...lines.log, info: () => {} };

exitAfterLifetime(log, 'presence node');

// ---------------------------------------------------------------------------------------------------- store

async function openPresence() {
  if (config.presence === undefined) return undefined;
  const { kind, url, name } = config.presence;
  if (kind === 'redis') {
    const { RedisPresence } = await import('@cagey-sessions/adapter-redis');
    if (RedisPresence === undefined)
      throw new Error('@cagey-sessions/adapter-redis has no RedisPresence (built?)');
    return new RedisPresence({ url, prefix: `${name}:` });
  }
  if (kind === 'postgres') {
    const { PostgresPresence } = await import('@cagey-sessions/adapter-postgres');
    if (PostgresPresence === undefined) {
      throw new Error('@cagey-sessions/adapter-postgres has no PostgresPresence (built?)');
    }
    const presence = new PostgresPresence({ url, table: name });
    await presence.setup?.();
    return presence;
  }
  throw new Error(`unknown presence ${kind}`);
}

const adapter = await openAdapter();
const presence = await openPresence();
// Without a presence (the benchmark's baseline), the node is a plain game server on the shared store.
const manager = create(
  { log, adapter },
  {
    userData: { persistence: config.persistence ?? {} },
    ...(presence === undefined
      ? {}
      : {
          presence,
          nodeId: node,
          leaseTtl: config.presence.leaseTtl,
          handoffTimeout: config.presence.handoffTimeout,
        }),
  },
);

// ---------------------------------------------------------------------------------------------------- lives

/** Session -> its life number, so that each `end` line names the `start` it closes. */
const lives = new WeakMap();
let nextLife = 0;
const counters = { plays: 0, kicked: 0, kickedLeaseLost: 0, handoffWaits: 0 };

manager.on('identified', (session, userId) => {
  const life = ++nextLife;
  lives.set(session, life);
  write('info', [{ event: 'start', userId: String(userId), life, at: now() }, 'life']);
});
manager.on('kicked', (session, info) => {
  counters.kicked++;
  if (info.reason === 'lease-lost') counters.kickedLeaseLost++;
  // The game closes the player's connection: here, the player's session is forgotten.
  const userId = String(session.userId);
  if (sessions.get(userId) === session) sessions.delete(userId);
  write('info', [{ event: 'kicked', userId, life: lives.get(session), at: now(), ...info }, 'life']);
});
manager.on('destroy', (session) => {
  const life = lives.get(session);
  if (life === undefined) return;
  lives.delete(session);
  write('info', [{ event: 'end', userId: String(session.userId), life, at: now() }, 'life']);
});

// ---------------------------------------------------------------------------------------------------- players

/** userId -> live session on this node. */
const sessions = new Map();
const withUser = oneAtATimePerUser();

/** An error tagged with where it happened: `identify` (nothing changed) or `persist` (a change of unknown fate). */
function failed(error, phase) {
  const out = error instanceof Error ? error : new Error(String(error));
  out.phase = phase;
  return out;
}

async function login(userId) {
  const session = await manager.create();
  const started = performance.now();
  try {
    await session.start();
    await session.identify(userId, { defaults: { counter: 0 } });
  } catch (error) {
    await session.destroy(false).catch(() => {});
    throw failed(error, 'identify');
  }
  sessions.set(userId, session);
  return { session, identifyMs: performance.now() - started };
}

const commands = {
  /**
   * One move of a player on this node: logs in when this node has no session of the player (taking it over from
   * the node that holds it), adds one to the counter and stores it. Result: the acknowledged counter and version.
   */
  play({ userId }) {
    return withUser(userId, async () => {
      counters.plays++;
      let session = sessions.get(userId);
      let identifyMs;
      if (session === undefined || session.isDestroyed) {
        ({ session, identifyMs } = await login(userId));
      }
      if (session.isDestroyed) {
        const error = new Error(`${userId} was kicked before the change`);
        error.code = 'KICKED';
        throw failed(error, 'identify');
      }
      const counter = ++session.userData.counter;
      const persisting = performance.now();
      try {
        await session.persistNow();
      } catch (error) {
        throw failed(error, 'persist');
      }
      return { counter, version: session.version, identifyMs, persistMs: performance.now() - persisting };
    });
  },

  /**
   * The player leaves this node: `session.destroy()`, which stores the newest data. `graceMs`: the connection
   * dropped, and the session is kept that long for a reconnection before it ends (a game without a presence).
   */
  logout({ userId, graceMs = 0 }) {
    return withUser(userId, async () => {
      const session = sessions.get(userId);
      if (session === undefined) return { loggedIn: false };
      if (graceMs > 0) await new Promise((resolve) => setTimeout(resolve, graceMs));
      sessions.delete(userId);
      await session.destroy(true);
      return { loggedIn: true };
    });
  },

  /** Every player leaves (the end of the run). */
  async logoutAll() {
    const users = [...sessions.keys()];
    const outcomes = await Promise.allSettled(users.map((userId) => commands.logout({ userId })));
    const failures = outcomes
      .filter((outcome) => outcome.status === 'rejected')
      .map((o) => serialise(o.reason));
    return { users: users.length, failures };
  },

  stats() {
    return { ...manager.stats(), ...counters, loggedIn: sessions.size };
  },
};

let shuttingDown = false;
serveCommands(commands, { log, what: 'presence node', isShuttingDown: () => shuttingDown });

// The README's shutdown: store everything, release every user in the presence, close what was opened.
process.on('SIGTERM', async () => {
  shuttingDown = true;
  process.channel?.unref();
  try {
    await manager.destroy();
    write('info', [{ ...counters }, 'presence node: every player stored']);
  } catch (error) {
    log.error(
      { err: error, unsaved: error.unsaved?.map((u) => u.userId) },
      'presence node: shutdown incomplete',
    );
    process.exitCode = 1;
  } finally {
    await Promise.allSettled([adapter.close(), presence?.close()]);
  }
});

write('info', [
  { store: config.store, presence: config.presence?.kind ?? 'none', pid: process.pid },
  'presence node: ready',
]);
process.send?.({ event: 'ready', pid: process.pid });

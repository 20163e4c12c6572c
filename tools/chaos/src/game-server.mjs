/**
 * A small game server, written the way a user of the library writes one: plain JavaScript, the packages as
 * installed (`@cagey-sessions/core` and an adapter, resolved to their built `dist`), and the README's SIGTERM
 * handler. The chaos runner starts it with `fork()` and drives it over the IPC channel:
 *
 *   parent -> child  { id, cmd, ...args }
 *   child -> parent  { id, ok: true, result } | { id, ok: false, error: { name, code, message } }
 *                    { event: 'ready', pid }
 *
 * Every log line (the library's and the game's) is one JSON object on stdout, so the parent can check what was
 * logged. Configuration comes as JSON in the CHAOS_GAME_CONFIG environment variable.
 *
 * Player data is `{ counter, log }`: each change adds 1 to `counter` and appends a token unique to this process
 * (`<node>:<sequence>`) to `log`, so the parent can tell from the stored data which changes it holds.
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { ConflictError, create } from '@cagey-sessions/core';
import {
  config,
  exitAfterLifetime,
  jsonLines,
  oneAtATimePerUser,
  openAdapter,
  serialise,
  serveCommands,
} from './game-process.mjs';

const node = String(config.node ?? 'game');
/** How often the game loop ticks; its lateness is the stall figure. */
const TICK_MS = 5;
const { log } = jsonLines(node);

// ---------------------------------------------------------------------------------------------------- game loop

/**
 * The loop's lateness per tick, and how much of it the process spent on the CPU. A tick late by 150 ms during
 * which the process used 3 ms of CPU was not blocked by this process: the machine did not run it (other
 * processes on the same 2 cores). `maxBusyStallMs` is the longest lateness this process's own work can
 * account for: min(lateness, CPU time the process used during that tick).
 */
let maxStallMs = 0;
let maxBusyStallMs = 0;
let loadAtMaxStall;
let lastTick = performance.now();
let lastCpu = process.cpuUsage();
const gameLoop = setInterval(() => {
  const now = performance.now();
  const cpu = process.cpuUsage();
  const late = now - lastTick - TICK_MS;
  const cpuMs = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
  if (late > maxStallMs) {
    maxStallMs = late;
    loadAtMaxStall = loadavg()[0];
  }
  maxBusyStallMs = Math.max(maxBusyStallMs, Math.min(late, cpuMs));
  lastTick = now;
  lastCpu = cpu;
}, TICK_MS);
// The game loop never keeps the process alive: at shutdown only the library's pending work may.
gameLoop.unref();

exitAfterLifetime(log, 'game server');

const adapter = await openAdapter();
const manager = create({ log, adapter }, { userData: { persistence: config.persistence ?? {} } });

// ---------------------------------------------------------------------------------------------------- players

/** userId -> live session on this node. */
const sessions = new Map();
const withUser = oneAtATimePerUser();
let sequence = 0;
const counters = {
  conflicts: 0,
  reloads: 0,
  reloadFailures: 0,
  maxReloadMs: 0,
  persistErrors: 0,
  reloadsOnLogin: 0,
};

function mutate(data) {
  sequence++;
  data.counter = (data.counter ?? 0) + 1;
  const token = `${node}:${sequence}`;
  data.log ??= [];
  data.log.push(token);
  return token;
}

function sessionOf(userId) {
  const session = sessions.get(userId);
  if (session === undefined) {
    const error = new Error(`user ${userId} is not logged in on ${node}`);
    error.code = 'NOT_LOGGED_IN';
    throw error;
  }
  return session;
}

/** After a conflict: reload the newest data from the store; `since` is when the conflict was seen. */
async function reloadAfterConflict(userId, session, since) {
  if (session.isDestroyed || sessions.get(userId) !== session) return;
  try {
    await session.reload();
    counters.reloads++;
    counters.maxReloadMs = Math.max(counters.maxReloadMs, performance.now() - since);
    log.info({ userId, counter: session.userData?.counter, version: session.version }, 'game: reloaded');
  } catch (error) {
    counters.reloadFailures++;
    log.error({ userId, err: error }, 'game: reload after a conflict failed');
  }
}

async function login(userId) {
  const existing = sessions.get(userId);
  if (existing !== undefined) {
    // The player was moved to another node without logging out here: what this node holds is stale, the
    // store is the truth.
    await existing.reload();
    counters.reloadsOnLogin++;
    if (config.traceSessions) {
      log.info(
        { userId, version: existing.version, counter: existing.userData.counter },
        'game: login (reload)',
      );
    }
    return { counter: existing.userData.counter ?? 0, log: existing.userData.log ?? [] };
  }
  const session = await manager.create();
  try {
    await session.start();
    session.on('persistError', () => {
      counters.persistErrors++;
    });
    session.on('conflict', (error) => {
      const since = performance.now();
      counters.conflicts++;
      log.warn(
        { userId, expectedVersion: error.expectedVersion, currentVersion: error.currentVersion },
        'game: conflict',
      );
      if (config.onConflict === 'reload') withUser(userId, () => reloadAfterConflict(userId, session, since));
    });
    const data = await session.identify(userId, { defaults: { counter: 0, log: [] } });
    sessions.set(userId, session);
    const result = { counter: data.counter ?? 0, log: data.log ?? [], version: session.version };
    if (config.traceSessions)
      log.info({ userId, version: session.version, counter: result.counter }, 'game: login');
    if (config.checkLogins) {
      // Diagnostic only (a game would not do this): what the store holds, to tell whether identify() loaded
      // it or took over unsaved data this process kept from an earlier session of the player.
      const stored = await adapter.load(userId);
      result.storedVersion = stored?.version ?? 0;
      if (result.storedVersion !== session.version) {
        log.warn(
          { userId, version: session.version, storedVersion: result.storedVersion, counter: result.counter },
          'game: login took over data of another version than the stored one',
        );
      }
    }
    return result;
  } catch (error) {
    await session.destroy(false).catch(() => {});
    throw error;
  }
}

/** Runs `operation` over `items`, `limit` at a time; resolves with the outcomes in order. */
async function pool(items, limit, operation) {
  const outcomes = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        outcomes[index] = { ok: true, value: await operation(items[index]) };
      } catch (error) {
        outcomes[index] = { ok: false, error: serialise(error) };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return outcomes;
}

function stalls() {
  return { maxStallMs, maxBusyStallMs, loadAtMaxStall };
}

const commands = {
  /** Logs players in (identify: loads stored data and version). Result: counters of those logged in, failures. */
  async login({ users, concurrency = 16, withLog = false }) {
    const outcomes = await pool(users, concurrency, (userId) => withUser(userId, () => login(userId)));
    const loaded = {};
    const failed = {};
    outcomes.forEach((outcome, index) => {
      const userId = users[index];
      if (outcome.ok) loaded[userId] = withLog ? outcome.value : outcome.value.counter;
      else failed[userId] = outcome.error;
    });
    return { loaded, failed };
  },

  /** Changes players' data in memory (written later: interval, flush, logout, shutdown). */
  async mutate({ users, all = false, times = 1 }) {
    const ids = all ? [...sessions.keys()] : users;
    const result = {};
    for (const userId of ids) {
      const session = sessions.get(userId);
      if (session === undefined) continue;
      for (let i = 0; i < times; i++) mutate(session.userData);
      result[userId] = session.userData.counter;
    }
    return all ? { count: ids.length, counters: result } : { counters: result };
  },

  /** A purchase: change the data, then `persistNow()`; the reply (the acknowledgement) comes only once stored. */
  purchase({ userId }) {
    return withUser(userId, async () => {
      const session = sessionOf(userId);
      const token = mutate(session.userData);
      const counter = session.userData.counter;
      const started = performance.now();
      await session.persistNow();
      return { counter, token, ms: performance.now() - started };
    });
  },

  /** Logout: `session.destroy(persist)`. Result: the data at logout and whether its final write failed. */
  logout({ userId, persist = true }) {
    return withUser(userId, async () => {
      const session = sessionOf(userId);
      let failed = false;
      const onFail = () => {
        failed = true;
      };
      session.on('persistError', onFail);
      session.on('conflict', onFail);
      const data = session.userData;
      sessions.delete(userId);
      await session.destroy(persist);
      if (config.traceSessions) {
        log.info(
          { userId, persist, failed, version: session.version, counter: data.counter },
          'game: logout',
        );
      }
      return { counter: data.counter ?? 0, log: data.log ?? [], failed };
    });
  },

  /**
   * The last logout of a player at the end of a run: store the data (after a conflict, reload and store again,
   * at most 3 times), then log out. Result: the data at logout, whether it was stored.
   */
  finalLogout({ userId }) {
    return withUser(userId, async () => {
      const session = sessionOf(userId);
      let stored = false;
      for (let attempt = 0; attempt < 3 && !stored; attempt++) {
        try {
          await session.persistNow();
          stored = true;
        } catch (error) {
          if (!(error instanceof ConflictError)) throw error;
          await session.reload();
          counters.reloads++;
        }
      }
      const data = session.userData;
      sessions.delete(userId);
      await session.destroy(true);
      return { counter: data.counter ?? 0, log: data.log ?? [], stored };
    });
  },

  /** `manager.persistAllUserData()`. Result: how long it took; the unsaved users when it rejected. */
  async flush() {
    const started = performance.now();
    try {
      await manager.persistAllUserData();
      return { ok: true, ms: performance.now() - started };
    } catch (error) {
      return { ok: false, ms: performance.now() - started, error: serialise(error) };
    }
  },

  /** The data this node holds: counters of every player, or counter and log of the given ones. */
  data({ users }) {
    if (users === undefined) {
      return Object.fromEntries([...sessions].map(([userId, s]) => [userId, s.userData.counter ?? 0]));
    }
    const out = {};
    for (const userId of users) {
      const session = sessions.get(userId);
      if (session !== undefined)
        out[userId] = { counter: session.userData.counter, log: session.userData.log };
    }
    return out;
  },

  stats() {
    return { ...manager.stats(), ...counters, ...stalls(), loggedIn: sessions.size };
  },

  resetStall() {
    maxStallMs = 0;
    maxBusyStallMs = 0;
    loadAtMaxStall = undefined;
    return {};
  },
};

// The runner went away without stopping this process: exit rather than linger.
let shuttingDown = false;
serveCommands(commands, { log, what: 'game server', isShuttingDown: () => shuttingDown });

// The README's shutdown: flush everything, report who was not saved, close the adapter.
process.on('SIGTERM', async () => {
  shuttingDown = true;
  // The runner's IPC channel must not keep this process alive: only the library's pending work may.
  process.channel?.unref();
  log.info({ sessions: sessions.size }, 'game server: SIGTERM, shutting down');
  try {
    await manager.destroy();
    log.info({ ...counters, ...stalls() }, 'game server: every player stored');
  } catch (error) {
    log.error(
      { err: error, unsaved: error.unsaved?.map((u) => u.userId), ...counters, ...stalls() },
      'game server: shutdown incomplete',
    );
    // Unhandled: the process exits with code 1.
    throw error;
  } finally {
    await adapter.close();
  }
});

log.info({ store: config.store, pid: process.pid }, 'game server: ready');
process.send?.({ event: 'ready', pid: process.pid });

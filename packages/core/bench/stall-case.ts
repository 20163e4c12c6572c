/**
 * One case of the event-loop stall benchmark, run in a child process of `bench/stalls.ts` so that cases do
 * not share a heap: N identified sessions of 1 KB, all stored, then X% of them changed, then one flush
 * (`persistAllUserData()`; an interval flush does the same work). Prints one JSON line: the flush's duration and the longest event-loop stall while it ran.
 *
 *   tsx bench/stall-case.ts <core module path> <sessions> <dirty fraction> <snapshot|explicit>
 */
import { playerData } from '@cagey-sessions/bench-kit';
import { MemoryAdapter } from '@cagey-sessions/testing';

const [modulePath, sessionsArg, dirtyArg, mode] = process.argv.slice(2);
const core = (await import(modulePath!)) as typeof import('../src/index.js');
const sessions = Number(sessionsArg);
const dirtyFraction = Number(dirtyArg);
/** `shutdown-down`: the store refuses every connection, and the case measures `manager.destroy()` instead. */
const storeDown = mode === 'shutdown-down';
const refusing = {
  name: 'down',
  load: async () => undefined,
  save: async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  },
  delete: async () => false,
  close: async () => {},
};
const persistence: Record<string, unknown> = storeDown ? { shutdownTimeout: 2000 } : {};
if (mode === 'explicit') persistence.dirtyTracking = 'explicit';
const manager = new core.SessionManager({
  adapter: storeDown ? refusing : new MemoryAdapter(),
  userData: { persistence },
});
const all: import('../src/index.js').Session[] = [];
for (let i = 0; i < sessions; i++) {
  const session = await manager.create();
  await session.setUser(i, playerData(i), { version: 0 });
  all.push(session);
}
if (!storeDown) await manager.persistAllUserData();

/** Changes the dirty share of users, then flushes once and watches the event loop meanwhile. */
async function measureOneFlush(): Promise<{ flushMs: number; stallMs: number }> {
  const dirty = Math.round(sessions * dirtyFraction);
  const step = dirty === 0 ? 0 : sessions / dirty;
  for (let k = 0; k < dirty; k++) {
    const session = all[Math.floor(k * step)]!;
    (session.userData as { gold: number }).gold += 1;
    (session as { markDirty?: () => void }).markDirty?.();
  }
  let stallMs = 0;
  let last = performance.now();
  const probe = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last - 1);
    last = now;
  }, 1);
  const started = performance.now();
  await manager.persistAllUserData();
  const flushMs = performance.now() - started;
  clearInterval(probe);
  stallMs = Math.max(stallMs, performance.now() - last - 1);
  return { flushMs, stallMs };
}

/** Changes every user, then shuts down with the store refusing connections, watching the event loop. */
async function measureShutdown(): Promise<{ flushMs: number; stallMs: number }> {
  for (const session of all) (session.userData as { gold: number }).gold += 1;
  let stallMs = 0;
  let last = performance.now();
  const probe = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last - 1);
    last = now;
  }, 1);
  const started = performance.now();
  await manager.destroy(true).catch(() => {});
  const flushMs = performance.now() - started;
  clearInterval(probe);
  return { flushMs, stallMs: Math.max(stallMs, performance.now() - last - 1) };
}

const result = storeDown ? await measureShutdown() : await measureOneFlush();
if (!storeDown) await manager.destroy(false);
console.log(JSON.stringify(result));

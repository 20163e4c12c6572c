/**
 * Names of the metrics, spans and attributes, following the OpenTelemetry naming guidelines: one namespace,
 * `cagey_sessions` (a multi-word component joins its words with `_`), components separated by `.`, units as
 * UCUM (`s`) or annotations (`{write}`), no unit or `_total` in a name.
 */

/** Observable up-down counters: the state of a manager, read from `manager.stats()` at each collection. */
export const GAUGES = {
  sessions: 'cagey_sessions.active_sessions',
  identified: 'cagey_sessions.identified_sessions',
  dirty: 'cagey_sessions.dirty_users',
  inFlight: 'cagey_sessions.in_flight_users',
  queued: 'cagey_sessions.queued_users',
  retrying: 'cagey_sessions.retrying_users',
  orphaned: 'cagey_sessions.orphaned_users',
} as const;

export const METRICS = {
  writes: 'cagey_sessions.writes',
  retries: 'cagey_sessions.retries',
  conflicts: 'cagey_sessions.conflicts',
  flushDuration: 'cagey_sessions.flush.duration',
  batchDuration: 'cagey_sessions.batch.duration',
  batchSize: 'cagey_sessions.batch.size',
  persistDuration: 'cagey_sessions.persist.duration',
  shutdownDuration: 'cagey_sessions.shutdown.duration',
  shutdownUnsaved: 'cagey_sessions.shutdown.unsaved_users',
  handoffDuration: 'cagey_sessions.handoff.duration',
} as const;

export const SPANS = {
  flush: 'cagey_sessions.flush',
  batch: 'cagey_sessions.batch',
  persist: 'cagey_sessions.persist',
  shutdown: 'cagey_sessions.shutdown',
} as const;

export const ATTRIBUTES = {
  adapter: 'cagey_sessions.adapter.name',
  reason: 'cagey_sessions.flush.reason',
  outcome: 'cagey_sessions.write.outcome',
  maybeStored: 'cagey_sessions.maybe_stored',
  flushUnsaved: 'cagey_sessions.flush.unsaved_users',
  shutdownUnsaved: 'cagey_sessions.shutdown.unsaved_users',
  shutdownMaybeStored: 'cagey_sessions.shutdown.maybe_stored_users',
  batchSize: 'cagey_sessions.batch.size',
  ok: 'cagey_sessions.batch.ok',
  conflict: 'cagey_sessions.batch.conflict',
  error: 'cagey_sessions.batch.error',
  failures: 'cagey_sessions.retry.failures',
  delay: 'cagey_sessions.retry.delay',
  expectedVersion: 'cagey_sessions.conflict.expected_version',
  currentVersion: 'cagey_sessions.conflict.current_version',
  handoffOutcome: 'cagey_sessions.handoff.outcome',
  /** Semantic conventions. */
  errorType: 'error.type',
  userId: 'user.id',
  dbSystem: 'db.system',
  dbSystemName: 'db.system.name',
} as const;

/** Span events added to the flush, batch or `persistNow()` span a retry or conflict happens in. */
export const EVENTS = {
  retry: 'cagey_sessions.retry',
  conflict: 'cagey_sessions.conflict',
} as const;

/** Histogram buckets for durations in seconds: 1 ms to a minute. */
export const SECONDS_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
/** Histogram buckets for records per adapter call. */
export const SIZE_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/** `db.system` (and `db.system.name`) by adapter name; the memory adapter and unknown ones have none. */
const DB_SYSTEMS = new Map([
  ['postgres', 'postgresql'],
  ['redis', 'redis'],
  ['mongo', 'mongodb'],
]);

/**
 * The database an adapter writes to, by its `name`. A wrapper that names itself after the adapter it wraps
 * (`faulty(postgres)`, FaultyAdapter's name) maps as that adapter.
 */
export function dbSystemOf(adapter: string): string | undefined {
  let name = adapter;
  for (
    let wrapped = /^[\w.-]+\((.+)\)$/.exec(name);
    wrapped !== null;
    wrapped = /^[\w.-]+\((.+)\)$/.exec(name)
  )
    name = wrapped[1]!;
  return DB_SYSTEMS.get(name);
}

/**
 * `error.type`: an error's stable `code` when it has one (core's and the adapters' errors do, e.g.
 * `VERSION_CONFLICT`, `ADAPTER_TIMEOUT`, and Node's system errors, e.g. `ECONNREFUSED`), else its class name.
 * `PERSIST_FAILED` only says that a write did not reach the store, so its cause (the store's error) is
 * described instead when there is one.
 */
export function errorTypeOf(error: unknown): string {
  let current = error;
  for (let depth = 0; depth < 5; depth++) {
    if (typeof current !== 'object' || current === null) break;
    const { code, cause } = current as { code?: unknown; cause?: unknown };
    if (code === 'PERSIST_FAILED' && typeof cause === 'object' && cause !== null) {
      current = cause;
      continue;
    }
    if (typeof code === 'string' && code !== '') return code;
    if (current instanceof Error) return current.name || current.constructor.name;
    break;
  }
  return '_OTHER';
}

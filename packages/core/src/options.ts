import { randomBytes } from 'node:crypto';
import ms from 'ms';
import type { DirtyTracking } from './dirty-tracker.js';
import { ValidationError } from './errors.js';
import type { PersistenceAdapter, Presence } from './types.js';

/**
 * A unit of an `ms` duration string, in any case: `ms`, `s`, `sec`, `secs`, `second(s)`, `m`, `min(s)`,
 * `minute(s)`, `h`, `hr(s)`, `hour(s)`, `d`, `day(s)`, `w`, `week(s)`, `y`, `yr(s)`, `year(s)` (and `msec(s)`,
 * `millisecond(s)`).
 */
export type DurationUnit = Uppercase<DurationUnitName> | Lowercase<DurationUnitName> | DurationUnitName;

type DurationUnitName =
  | 'Years'
  | 'Year'
  | 'Yrs'
  | 'Yr'
  | 'Y'
  | 'Weeks'
  | 'Week'
  | 'W'
  | 'Days'
  | 'Day'
  | 'D'
  | 'Hours'
  | 'Hour'
  | 'Hrs'
  | 'Hr'
  | 'H'
  | 'Minutes'
  | 'Minute'
  | 'Mins'
  | 'Min'
  | 'M'
  | 'Seconds'
  | 'Second'
  | 'Secs'
  | 'Sec'
  | 's'
  | 'Milliseconds'
  | 'Millisecond'
  | 'Msecs'
  | 'Msec'
  | 'Ms';

/**
 * A duration string the [`ms`](https://github.com/vercel/ms) package parses: a number, optionally followed by
 * a unit, with or without a space (`'30s'`, `'5 min'`, `'250ms'`, `'1.5h'`, `'7d'`). The same strings as `ms`'s
 * `StringValue`, so an unknown unit (`'30 sekunden'`, `'5mins.'`) is a compile error, not a start-up failure.
 */
export type DurationString = `${number}` | `${number}${DurationUnit}` | `${number} ${DurationUnit}`;

/**
 * A positive duration: milliseconds, or an `ms` string such as `'30s'`, `'5m'`, `'250ms'`. A string held in a
 * `string` variable (read from the environment, say) needs a check or a cast: `value as DurationString`; the
 * option check still refuses it at run time if `ms` cannot parse it.
 */
export type Duration = number | DurationString;

/**
 * Structured logger, pino style (`log.warn({ userId }, 'message')`); cagey-logger and pino fit. Every method is
 * optional; the default is silent.
 */
export interface Logger {
  debug?(...args: unknown[]): void;
  info?(...args: unknown[]): void;
  warn?(...args: unknown[]): void;
  error?(...args: unknown[]): void;
}

export interface PersistenceOptions {
  /**
   * Occasions on which user data is persisted, e.g. `['disconnect', 'shutdown']`. `willPersistUserDataOn(name)`
   * answers from this list; `session.destroy()` without an argument persists when it holds `'disconnect'`,
   * `manager.destroy()` without an argument when it holds `'shutdown'`.
   */
  events?: string[];
  /** Flush every dirty session this often (e.g. `'30s'`). Without it, data is written only on demand and on events. */
  interval?: Duration;
  /** Records per adapter call. Default: the adapter's `maxBatchSize`, else 500. */
  batchSize?: number;
  /** Adapter calls in flight at once. Default 4. */
  concurrency?: number;
  /** Backoff of automatic retries after a failed write: doubles from `initialDelay` up to `maxDelay`, with jitter. */
  retry?: { initialDelay?: Duration; maxDelay?: Duration };
  /** How long `manager.destroy(true)` keeps retrying before it reports the users it could not save. Default `'15s'`. */
  shutdownTimeout?: Duration;
  /**
   * How long one adapter call (`save`, `load`) may take before it counts as failed (ADAPTER_TIMEOUT) and is
   * retried, so a store that hangs never makes `persistNow()` or `identify()` wait forever. Default `'10s'`.
   */
  callTimeout?: Duration;
  /**
   * How changes are found. `'snapshot'` (default): every flush serialises every user and compares it with what
   * was stored, so in-place mutation is seen without help. `'explicit'`: only users marked with
   * `session.markDirty()` (or written with `persistNow()`) are looked at, so a flush costs what the changed
   * users cost; a change nobody marks is not written.
   */
  dirtyTracking?: DirtyTracking;
}

export interface SessionManagerOptions {
  /** Where user data is stored. Without one, `persistUserData` listeners do the writing, as in the original API. */
  adapter?: PersistenceAdapter | undefined;
  log?: Logger | undefined;
  userData?: { persistence?: PersistenceOptions };
  /**
   * Makes this manager one node of several sharing a store: one live session per user across all of them
   * (`RedisPresence`, `PostgresPresence`, `MemoryPresence`). See "Several game-server processes" in the README.
   */
  presence?: Presence | undefined;
  /** This node's name in the presence (1-128 characters of `[A-Za-z0-9._:-]`). Default: random, logged. */
  nodeId?: string | undefined;
  /**
   * How long this node's hold on its users outlives its last renewal (renewed every third of it). A node that
   * crashed or is cut off loses its users this long after its last renewal, and not before. Default `'5s'`.
   */
  leaseTtl?: Duration | undefined;
  /**
   * How long `identify()` waits for another node to store and release the user before it rejects
   * (HANDOFF_TIMEOUT). Default `'10s'`.
   */
  handoffTimeout?: Duration | undefined;
}

export interface ResolvedPresenceOptions {
  presence: Presence;
  nodeId: string;
  leaseTtl: number;
  handoffTimeout: number;
}

export interface ResolvedPersistenceOptions {
  events: ReadonlySet<string>;
  interval: number | undefined;
  batchSize: number;
  concurrency: number;
  retryInitialDelay: number;
  retryMaxDelay: number;
  shutdownTimeout: number;
  callTimeout: number;
  dirtyTracking: DirtyTracking;
}

export function resolvePersistenceOptions(
  options: PersistenceOptions | undefined,
  adapter: PersistenceAdapter | undefined,
): ResolvedPersistenceOptions {
  const o = options ?? {};
  checkKeys('userData.persistence', o, PERSISTENCE_KEYS);
  if (o.retry !== undefined) checkKeys('userData.persistence.retry', o.retry, ['initialDelay', 'maxDelay']);
  if (o.dirtyTracking !== undefined && o.dirtyTracking !== 'snapshot' && o.dirtyTracking !== 'explicit') {
    throw optionError('userData.persistence.dirtyTracking', o.dirtyTracking, "'snapshot' or 'explicit'");
  }
  if (o.events !== undefined && (!Array.isArray(o.events) || !o.events.every((e) => typeof e === 'string'))) {
    throw optionError('userData.persistence.events', o.events, 'an array of event names');
  }
  return {
    events: new Set(o.events ?? []),
    interval: o.interval === undefined ? undefined : duration('userData.persistence.interval', o.interval),
    batchSize: positiveInteger('userData.persistence.batchSize', o.batchSize ?? adapter?.maxBatchSize ?? 500),
    concurrency: positiveInteger('userData.persistence.concurrency', o.concurrency ?? 4),
    retryInitialDelay: duration('userData.persistence.retry.initialDelay', o.retry?.initialDelay ?? '250ms'),
    retryMaxDelay: duration('userData.persistence.retry.maxDelay', o.retry?.maxDelay ?? '30s'),
    shutdownTimeout: duration('userData.persistence.shutdownTimeout', o.shutdownTimeout ?? '15s'),
    callTimeout: duration('userData.persistence.callTimeout', o.callTimeout ?? '10s'),
    dirtyTracking: o.dirtyTracking ?? 'snapshot',
  };
}

const PERSISTENCE_KEYS = [
  'events',
  'interval',
  'batchSize',
  'concurrency',
  'retry',
  'shutdownTimeout',
  'callTimeout',
  'dirtyTracking',
] as const;

/**
 * Checks the manager's options object and everything but `userData.persistence` (see
 * `resolvePersistenceOptions`): unknown keys are refused with the nearest valid one named (`adaptor` ->
 * `adapter`), and the adapter must have the contract's methods.
 */
export function checkManagerOptions(options: unknown): asserts options is SessionManagerOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('INVALID_OPTIONS', 'Invalid options: expected an object.');
  }
  checkKeys('options', options, MANAGER_KEYS);
  const { adapter, log, userData } = options as SessionManagerOptions;
  if (userData !== undefined) checkKeys('userData', userData, ['persistence']);
  if (log !== undefined && (typeof log !== 'object' || log === null)) {
    throw optionError('log', log, 'a logger object with debug/info/warn/error methods');
  }
  if (adapter !== undefined) checkAdapter(adapter);
}

const MANAGER_KEYS = ['adapter', 'log', 'userData', 'presence', 'nodeId', 'leaseTtl', 'handoffTimeout'];

/** The presence options, checked; `undefined` without a presence (then the other three must be absent). */
export function resolvePresenceOptions(options: SessionManagerOptions): ResolvedPresenceOptions | undefined {
  const { presence, nodeId, leaseTtl, handoffTimeout } = options;
  if (presence === undefined) {
    const stray = (['nodeId', 'leaseTtl', 'handoffTimeout'] as const).find((k) => options[k] !== undefined);
    if (stray !== undefined) {
      throw new ValidationError('INVALID_OPTIONS', `Invalid option ${stray}: it needs the presence option.`);
    }
    return undefined;
  }
  checkMethods('presence', presence, PRESENCE_METHODS, 'new RedisPresence({ ... })');
  if (nodeId !== undefined && !isNodeId(nodeId)) {
    throw optionError('nodeId', nodeId, NODE_ID_RULE);
  }
  // Whole milliseconds: what every presence engine takes (Redis PX refuses a fraction).
  const ttl = Math.ceil(duration('leaseTtl', leaseTtl ?? '5s'));
  if (ttl < 100) throw optionError('leaseTtl', leaseTtl, 'at least 100 ms');
  return {
    presence,
    nodeId: nodeId ?? `node-${randomBytes(6).toString('hex')}`,
    leaseTtl: ttl,
    handoffTimeout: duration('handoffTimeout', handoffTimeout ?? '10s'),
  };
}

const NODE_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** The `nodeId` rule in words, for messages. */
export const NODE_ID_RULE = '1-128 characters of A-Z a-z 0-9 . _ : -';

/** Whether `value` is a node id the manager accepts (and so sends to its presence). */
export function isNodeId(value: unknown): value is string {
  return typeof value === 'string' && NODE_ID.test(value);
}

const PRESENCE_METHODS = ['join', 'renew', 'claim', 'release', 'locate', 'send', 'leave', 'close'] as const;

const ADAPTER_METHODS = ['load', 'save', 'delete', 'close'] as const;

function checkMethods(name: string, value: unknown, methods: readonly string[], example: string): void {
  const missing =
    typeof value === 'object' && value !== null
      ? methods.filter((method) => typeof (value as Record<string, unknown>)[method] !== 'function')
      : methods;
  if (missing.length > 0) {
    const contract = name === 'adapter' ? 'a PersistenceAdapter' : 'a Presence';
    throw new ValidationError(
      'INVALID_OPTIONS',
      `Invalid option ${name}: ${contract} needs the methods ${methods.join(', ')}; ` +
        `missing ${missing.join(', ')}. Pass an instance such as ${example}.`,
    );
  }
}

function checkAdapter(adapter: unknown): void {
  checkMethods('adapter', adapter, ADAPTER_METHODS, 'new PostgresAdapter({ ... })');
  const batch = (adapter as { maxBatchSize?: unknown }).maxBatchSize;
  if (batch !== undefined && !(typeof batch === 'number' && Number.isSafeInteger(batch) && batch > 0)) {
    throw optionError('adapter.maxBatchSize', batch, 'a positive integer or nothing');
  }
}

/** Refuses keys of `value` not in `known` (INVALID_OPTIONS), naming the nearest known key. */
export function checkKeys(where: string, value: unknown, known: readonly string[]): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError('INVALID_OPTIONS', `Invalid option ${where}: expected an object.`);
  }
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const nearest = nearestKey(key, known);
    const hint = nearest === undefined ? `Known keys: ${known.join(', ')}.` : `Did you mean ${nearest}?`;
    throw new ValidationError(
      'INVALID_OPTIONS',
      `Unknown option ${where === 'options' ? '' : `${where}.`}${JSON.stringify(key).slice(0, 60)}. ${hint}`,
    );
  }
}

/** The known key within a small edit distance of `key` (typos, other spellings), if any. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Number.POSITIVE_INFINITY;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        previous[j]! + 1,
        row[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = row;
  }
  return previous[b.length]!;
}

export function duration(name: string, value: unknown): number {
  let parsed: unknown = value;
  try {
    if (typeof value === 'string') parsed = ms(value as ms.StringValue);
  } catch {
    // ms throws on an empty string; reported below like any other unusable value
  }
  if (typeof parsed === 'number' && Number.isFinite(parsed) && parsed > 0) return parsed;
  throw optionError(name, value, "a positive duration: milliseconds or an ms string such as '30s'");
}

function positiveInteger(name: string, value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw optionError(name, value, 'a positive integer');
}

function optionError(name: string, value: unknown, expected: string): ValidationError {
  const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return new ValidationError('INVALID_OPTIONS', `Invalid option ${name} = ${shown}: expected ${expected}.`);
}

const silent = () => {};

/** The logger with every method present, so call sites need no checks. */
export function completeLogger(log: Logger | undefined): Required<Logger> {
  return {
    debug: log?.debug?.bind(log) ?? silent,
    info: log?.info?.bind(log) ?? silent,
    warn: log?.warn?.bind(log) ?? silent,
    error: log?.error?.bind(log) ?? silent,
  };
}

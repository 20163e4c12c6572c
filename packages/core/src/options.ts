import ms from 'ms';
import { ValidationError } from './errors.js';
import type { PersistenceAdapter } from './types.js';

/** A duration: milliseconds, or an `ms` string such as `'30s'`, `'5m'`, `'250ms'`. */
export type Duration = number | string;

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
}

export interface SessionManagerOptions {
  /** Where user data is stored. Without one, `persistUserData` listeners do the writing, as in the original API. */
  adapter?: PersistenceAdapter | undefined;
  log?: Logger | undefined;
  userData?: { persistence?: PersistenceOptions };
}

export interface ResolvedPersistenceOptions {
  events: ReadonlySet<string>;
  interval: number | undefined;
  batchSize: number;
  concurrency: number;
  retryInitialDelay: number;
  retryMaxDelay: number;
  shutdownTimeout: number;
}

export function resolvePersistenceOptions(
  options: PersistenceOptions | undefined,
  adapter: PersistenceAdapter | undefined,
): ResolvedPersistenceOptions {
  const o = options ?? {};
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
  };
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

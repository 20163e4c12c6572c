/**
 * What core publishes on `node:diagnostics_channel`, for instrumentation (e.g. `@cagey-sessions/opentelemetry`)
 * without a dependency: tracing channels around flushes, adapter batches and `persistNow()`, and plain channels
 * for retries, conflicts and shutdown results. Every message carries the `manager` it belongs to. Nothing is
 * built or published while nobody subscribes. The names and message fields are a stable interface.
 */
import diagnostics from 'node:diagnostics_channel';
import type { UserId } from './types.js';

/** The channel names. */
export const CHANNELS = {
  flush: 'cagey-sessions:flush',
  batch: 'cagey-sessions:batch',
  persist: 'cagey-sessions:persist',
  retry: 'cagey-sessions:retry',
  conflict: 'cagey-sessions:conflict',
  shutdown: 'cagey-sessions:shutdown',
  handoff: 'cagey-sessions:handoff',
} as const;

/** `cagey-sessions:flush` (tracing): one flush; `unsaved` is set when it ends. */
export interface FlushMessage {
  manager: object;
  reason: 'explicit' | 'interval';
  unsaved?: number;
}

/** `cagey-sessions:batch` (tracing): one adapter `save` call; `outcomes` is set when it ends. */
export interface BatchMessage {
  manager: object;
  adapter: string;
  size: number;
  outcomes?: { ok: number; conflict: number; error: number };
}

/** `cagey-sessions:persist` (tracing): one `session.persistNow()`. */
export interface PersistMessage {
  manager: object;
  userId: UserId;
}

/** `cagey-sessions:retry`: a failed write, to be tried again after `delayMs`. */
export interface RetryMessage {
  manager: object;
  userId: UserId;
  failures: number;
  delayMs: number;
  error: Error;
}

/** `cagey-sessions:conflict`: the store held another version; the write was refused. */
export interface ConflictMessage {
  manager: object;
  userId: UserId;
  expectedVersion: number;
  currentVersion: number;
}

/** `cagey-sessions:shutdown`: `manager.destroy()` finished. */
export interface ShutdownMessage {
  manager: object;
  durationMs: number;
  unsaved: number;
  maybeStored: number;
}

/**
 * `cagey-sessions:handoff`: with a presence, a claim that met another node: the holder handed the user over
 * (`released`), its lease had expired (`expired`), or the claim gave up (`timeout`, `unavailable`).
 * `durationMs` runs from the claim's start to its end; `from` is the node that held the user.
 */
export interface HandoffMessage {
  manager: object;
  userId: string;
  from: string;
  outcome: 'released' | 'expired' | 'timeout' | 'unavailable';
  durationMs: number;
}

export const flushChannel = diagnostics.tracingChannel<object, FlushMessage>(CHANNELS.flush);
export const batchChannel = diagnostics.tracingChannel<object, BatchMessage>(CHANNELS.batch);
export const persistChannel = diagnostics.tracingChannel<object, PersistMessage>(CHANNELS.persist);
export const retryChannel = diagnostics.channel(CHANNELS.retry);
export const conflictChannel = diagnostics.channel(CHANNELS.conflict);
export const shutdownChannel = diagnostics.channel(CHANNELS.shutdown);
export const handoffChannel = diagnostics.channel(CHANNELS.handoff);

/** Runs `work` traced on `channel` with `message`, or just runs it while nobody subscribes. */
export function traced<T, M extends object>(
  channel: diagnostics.TracingChannel<object, M>,
  message: () => M,
  work: (message: M | undefined) => Promise<T>,
): Promise<T> {
  if (!channel.hasSubscribers) return work(undefined);
  const context = message();
  return channel.tracePromise(() => work(context), context);
}

/** Publishes on a plain channel, building the message only when somebody subscribes. */
export function publish<M>(channel: diagnostics.Channel, message: () => M): void {
  if (channel.hasSubscribers) channel.publish(message());
}

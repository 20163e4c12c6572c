/**
 * The messages core publishes on `node:diagnostics_channel` (its `CHANNELS`), as read here. They are read
 * defensively: a field that is missing or of another type is left out of the telemetry, never a reason to
 * throw inside core's call.
 */
import type { BatchMessage, FlushMessage, PersistMessage } from '@cagey-sessions/core';

export {
  CHANNELS,
  type ConflictMessage,
  type HandoffMessage,
  type RetryMessage,
  type ShutdownMessage,
} from '@cagey-sessions/core';

/** Fields a tracing channel's message gets from `TracingChannel` when the traced call throws or rejects. */
export interface Traced {
  manager: object;
  error?: unknown;
}

export type TracedFlush = FlushMessage & Traced;
export type TracedBatch = BatchMessage & Traced;
export type TracedPersist = PersistMessage & Traced;

/** A count from a message: a non-negative finite number, else 0. */
export function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

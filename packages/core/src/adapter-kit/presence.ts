import { ValidationError } from '../errors.js';
import { isNodeId, type Logger, NODE_ID_RULE } from '../options.js';
import type { PresenceMessage } from '../types.js';
import { userKey } from '../user-data.js';

/** Longest node id, in characters: what the manager's `nodeId` option allows. */
export const MAX_NODE_ID_LENGTH = 128;
/** Longest lease a presence accepts: what a Node.js timer (core's renewal) can wait. */
const MAX_LEASE_TTL_MS = 2 ** 31 - 1;
const MESSAGE_TYPES: ReadonlySet<string> = new Set(['release', 'released']);

export { isNodeId };

/**
 * Throws INVALID_OPTIONS unless `nodeId` is one the manager's `nodeId` option accepts (1-128 characters of
 * A-Z a-z 0-9 . _ : -), so that a presence takes exactly the node ids a manager sends.
 */
export function checkNodeId(name: string, nodeId: unknown): string {
  if (isNodeId(nodeId)) return nodeId;
  const shown = typeof nodeId === 'string' ? JSON.stringify(nodeId.slice(0, 64)) : String(nodeId);
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${name}] Invalid nodeId ${shown}: expected ${NODE_ID_RULE}.`,
  );
}

/**
 * Throws INVALID_OPTIONS unless `ttlMs` is a lease of at least 1 millisecond and at most 2^31 - 1 (what core's
 * renewal timer can wait). Core passes its `leaseTtl`.
 */
export function checkLeaseTtl(name: string, ttlMs: unknown): number {
  if (typeof ttlMs === 'number' && Number.isFinite(ttlMs) && ttlMs >= 1 && ttlMs <= MAX_LEASE_TTL_MS) {
    return ttlMs;
  }
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${name}] Invalid lease ttl ${String(ttlMs).slice(0, 40)}: expected a positive number of milliseconds, ` +
      `at most ${MAX_LEASE_TTL_MS}.`,
  );
}

/**
 * Checks a presence message before it is sent or after it arrives: INVALID_OPTIONS for an unknown `type` or a
 * bad `from` (a node id), INVALID_USER_ID for a `userId` that is not a user key in string form. The message is
 * returned as it is, fields core may add included: a presence passes it on unaltered.
 */
export function checkPresenceMessage(name: string, message: unknown): PresenceMessage {
  const { type, userId, from } = (typeof message === 'object' && message !== null ? message : {}) as {
    type?: unknown;
    userId?: unknown;
    from?: unknown;
  };
  if (typeof type !== 'string' || !MESSAGE_TYPES.has(type)) {
    throw new ValidationError(
      'INVALID_OPTIONS',
      `[${name}] Invalid presence message: type must be 'release' or 'released' (got ${String(type).slice(0, 40)}).`,
    );
  }
  if (typeof userId !== 'string') {
    throw new ValidationError(
      'INVALID_USER_ID',
      `[${name}] Invalid presence message: userId must be a string (the stored form of the user id).`,
    );
  }
  userKey(userId);
  checkNodeId(name, from);
  return message as PresenceMessage;
}

/** Why a received payload was ignored: not JSON, or JSON that is not what the presence sends. */
export interface IncomingProblem {
  problem: 'json' | 'shape';
}

/**
 * A received payload (JSON text) as a presence message, or the kind of problem that makes it none. With
 * `read`, the payload is the presence's own envelope around a message: `read` takes the parsed JSON and
 * returns what it holds, or throws when it is not such an envelope (then `{ problem: 'shape' }`).
 */
export function parseIncoming(payload: string): PresenceMessage | IncomingProblem;
export function parseIncoming<T>(payload: string, read: (value: unknown) => T): T | IncomingProblem;
export function parseIncoming(
  payload: string,
  read: (value: unknown) => unknown = (value) => checkPresenceMessage('', value),
): unknown {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return { problem: 'json' } satisfies IncomingProblem;
  }
  try {
    return read(value);
  } catch {
    return { problem: 'shape' } satisfies IncomingProblem;
  }
}

/**
 * Hands a received message to a node's listener. A listener that throws, or returns a promise that rejects, is
 * reported to `failed` (e.g. a `WarnOnce`) instead of becoming an uncaught exception or an unhandled rejection
 * in the presence's connection handler.
 */
export function deliverMessage(
  onMessage: (message: PresenceMessage) => void,
  message: PresenceMessage,
  failed: (error: unknown) => void,
): void {
  try {
    const returned: unknown = onMessage(message);
    if (returned instanceof Promise) returned.catch(failed);
  } catch (error) {
    failed(error);
  }
}

/** Warns through `log` at most once per kind of problem, so a flood of bad payloads cannot flood the log. */
export class WarnOnce {
  readonly #log: Logger | undefined;
  readonly #seen = new Set<string>();

  constructor(log: Logger | undefined) {
    this.#log = log;
  }

  warn(kind: string, message: string, error?: unknown): void {
    if (this.#seen.has(kind)) return;
    this.#seen.add(kind);
    try {
      if (error === undefined) this.#log?.warn?.(message);
      else this.#log?.warn?.(message, error);
    } catch {
      // A logger that throws must not turn an ignored message into a failure.
    }
  }
}

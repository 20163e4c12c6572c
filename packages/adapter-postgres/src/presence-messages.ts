import { type Logger, type PresenceMessage, ValidationError } from '@cagey-sessions/core';
import { userKey } from '@cagey-sessions/core/adapter-kit';

/** Longest node id, in characters (core's `nodeId` option allows 128). */
export const MAX_NODE_ID_LENGTH = 128;
/**
 * PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. A message core sends (a user id of at most 512
 * bytes, two node ids) stays far below; a larger one is refused before it is sent rather than failing there.
 */
const MAX_MESSAGE_BYTES = 7000;
const MESSAGE_TYPES: ReadonlySet<string> = new Set(['release', 'released']);

/**
 * Throws INVALID_OPTIONS unless `nodeId` is 1 to 128 characters without control characters (it comes from the
 * manager's `nodeId` option).
 */
export function checkNodeId(name: string, nodeId: unknown): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (typeof nodeId === 'string' && /^[^\u0000-\u001f\u007f]{1,128}$/u.test(nodeId)) return nodeId;
  const shown = typeof nodeId === 'string' ? JSON.stringify(nodeId.slice(0, 64)) : String(nodeId);
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${name}] Invalid nodeId ${shown}: expected 1 to ${MAX_NODE_ID_LENGTH} characters without control characters.`,
  );
}

/** Throws INVALID_OPTIONS unless `ttlMs` is a positive number of milliseconds (at most about 24 days). */
export function checkTtl(name: string, ttlMs: unknown): number {
  if (typeof ttlMs === 'number' && Number.isFinite(ttlMs) && ttlMs >= 1 && ttlMs <= 2 ** 31 - 1) return ttlMs;
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${name}] Invalid lease ttl ${String(ttlMs).slice(0, 40)}: expected a positive number of milliseconds.`,
  );
}

/**
 * Checks a message before it is sent, and after it arrives: INVALID_USER_ID for a `userId` that is not a user
 * key in string form, INVALID_OPTIONS for an unknown `type`, a bad `from` (a node id), or a message too large for
 * a notification. Returns its JSON text; fields core may add travel with it, unaltered.
 */
export function encodeMessage(name: string, message: unknown): string {
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
  const json = JSON.stringify(message);
  if (Buffer.byteLength(json) > MAX_MESSAGE_BYTES) {
    throw new ValidationError(
      'INVALID_OPTIONS',
      `[${name}] Invalid presence message: ${Buffer.byteLength(json)} bytes of JSON, more than a notification carries (${MAX_MESSAGE_BYTES}).`,
    );
  }
  return json;
}

/** What a notification carries: the recipient, its incarnation, and the message. */
export interface Envelope {
  to: string;
  token: string;
  message: PresenceMessage;
}

/** A received payload as an envelope, or the kind of problem that makes it none. */
export function parseEnvelope(payload: string): Envelope | { problem: 'json' | 'shape' } {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return { problem: 'json' };
  }
  const { to, token, message } = (typeof value === 'object' && value !== null ? value : {}) as {
    to?: unknown;
    token?: unknown;
    message?: unknown;
  };
  if (typeof to !== 'string' || typeof token !== 'string') return { problem: 'shape' };
  try {
    encodeMessage('', message);
  } catch {
    return { problem: 'shape' };
  }
  return { to, token, message: message as PresenceMessage };
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

import { type Logger, type PresenceMessage, ValidationError } from '@cagey-sessions/core';
import { userKey } from '@cagey-sessions/core/adapter-kit';
import { checkNodeId } from './presence-keys.js';

const MESSAGE_TYPES: ReadonlySet<string> = new Set(['release', 'released']);

/**
 * Checks a message before it is sent or after it arrives: throws INVALID_USER_ID for a `userId` that is not a
 * valid user key in string form, INVALID_OPTIONS for an unknown `type` or a bad `from` (a node id). The message
 * itself travels as it is, fields core may add included: never altered.
 */
export function checkMessage(name: string, message: unknown): PresenceMessage {
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

/** A received payload as a message, or why it is not one. */
export function parseIncoming(payload: string): PresenceMessage | { problem: 'json' | 'shape' } {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return { problem: 'json' };
  }
  try {
    return checkMessage('', value);
  } catch {
    return { problem: 'shape' };
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

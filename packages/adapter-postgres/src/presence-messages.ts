import { type PresenceMessage, ValidationError } from '@cagey-sessions/core';
import { checkPresenceMessage, type IncomingProblem, parseIncoming } from '@cagey-sessions/core/adapter-kit';

/**
 * PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. A message core sends (a user id of at most 512
 * bytes, two node ids) stays far below; a larger one is refused before it is sent rather than failing there.
 */
const MAX_MESSAGE_BYTES = 7000;

/**
 * Checks a message before it is sent, and after it arrives (the kit's checks), and that it fits in a
 * notification (INVALID_OPTIONS). Returns its JSON text; fields core may add travel with it, unaltered.
 */
export function encodeMessage(name: string, message: unknown): string {
  checkPresenceMessage(name, message);
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
export function parseEnvelope(payload: string): Envelope | IncomingProblem {
  return parseIncoming(payload, readEnvelope);
}

/** The envelope in a notification's parsed JSON; throws for anything else. */
function readEnvelope(value: unknown): Envelope {
  const { to, token, message } = (typeof value === 'object' && value !== null ? value : {}) as {
    to?: unknown;
    token?: unknown;
    message?: unknown;
  };
  if (typeof to !== 'string' || typeof token !== 'string') {
    throw new TypeError('not a presence envelope: to and token must be strings');
  }
  encodeMessage('', message);
  return { to, token, message: message as PresenceMessage };
}

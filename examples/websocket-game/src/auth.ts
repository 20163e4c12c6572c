/**
 * An example `authenticate` hook: a login must carry `auth`, an HMAC-SHA256 of the user id under a secret the
 * game's account service shares with the game server. A real game would check its own session tokens or
 * signed JWTs here; the shape of the hook is the same.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Authenticate } from './server.js';

/** The token a login for `userId` must carry: base64url(HMAC-SHA256(secret, userId)). */
export function authToken(secret: string, userId: string): string {
  return createHmac('sha256', secret).update(userId).digest('base64url');
}

/** Accepts a login whose `auth` is `authToken(secret, userId)`; compares in constant time. */
export function hmacAuthenticator(secret: string): Authenticate {
  if (secret.length < 16) throw new Error('the authentication secret must be at least 16 characters');
  return ({ userId, auth }) => {
    if (auth === undefined) return false;
    const expected = Buffer.from(authToken(secret, userId));
    const given = Buffer.from(auth);
    return given.length === expected.length && timingSafeEqual(given, expected);
  };
}

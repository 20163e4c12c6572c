/**
 * Whether a store refused the credentials (a wrong password, a user it does not know, a password missing):
 * retrying for `--retry-for` seconds would only repeat the refusal, so the run stops at once and says so.
 * Looks through the adapter's error to the driver's.
 */
export function credentialsRefused(error: unknown): boolean {
  let cause = error;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    const code = (cause as { code?: unknown }).code;
    // PostgreSQL: invalid_password, invalid_authorization_specification (no pg_hba.conf entry, unknown role).
    if (code === '28P01' || code === '28000') return true;
    // Redis: a wrong user or password (WRONGPASS), a password the server requires and the URL lacks (NOAUTH).
    if (/^(WRONGPASS|NOAUTH)\b/.test(cause.message)) return true;
    cause = cause.cause;
  }
  return false;
}

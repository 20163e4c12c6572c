import { CageySessionsError } from '@cagey-sessions/core';
import { credentialsRefused } from './credentials.js';
import { CliError } from './errors.js';
import { tableMissing } from './missing-table.js';
import { messageOf } from './stores.js';

export interface RetryOptions {
  /** How long to keep retrying a store that fails, in milliseconds, before giving up (STORE_UNREACHABLE). */
  retryForMs: number;
  /** What is being done, for the final message, e.g. `restore into redis://…`. */
  what: string;
  /** Called before each wait, e.g. to show it on the progress line. */
  onRetry?: ((error: unknown, attempt: number) => void) | undefined;
  redact: (text: string) => string;
}

/** Errors retrying cannot fix: bad input, a closed adapter, a broken contract. */
const PERMANENT_CODES = new Set([
  'INVALID_OPTIONS',
  'INVALID_USER_ID',
  'INVALID_USER_DATA',
  'INVALID_VERSION',
  'DUPLICATE_KEY',
  'ADAPTER_CLOSED',
  'ADAPTER_CONTRACT',
]);

/**
 * Runs `operation` until it succeeds, retrying a failing store (a restart, a lost connection) with backoff for
 * up to `retryForMs`. Every operation it is used for is safe to repeat: reads, and `restore`, whose second
 * attempt finds what the first one wrote at the same version (already there). A store that refuses the
 * credentials, or a table that does not exist, is not retried: that ends the run at once.
 */
export async function withRetry<T>(operation: () => Promise<T>, options: RetryOptions): Promise<T> {
  const giveUpAt = Date.now() + options.retryForMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (error instanceof CageySessionsError && PERMANENT_CODES.has(error.code)) throw error;
      if (error instanceof CliError) throw error;
      if (credentialsRefused(error)) {
        throw new CliError(
          'CREDENTIALS_REFUSED',
          `${options.what} failed: the store refused the credentials (${options.redact(messageOf(error))}). ` +
            'Check the user and password in the URL (or in the variable env:NAME reads, or PGPASSWORD).',
          { cause: error },
        );
      }
      if (tableMissing(error)) {
        throw new CliError(
          'TABLE_MISSING',
          `${options.what} failed: ${options.redact(messageOf(error))}. Check the table option (--table, ` +
            '--from-table or --to-table; default cagey_user_data) and the database the URL names.',
          { cause: error },
        );
      }
      const delay = Math.min(100 * 2 ** (attempt - 1), 2_000);
      if (Date.now() + delay > giveUpAt) {
        throw new CliError(
          'STORE_UNREACHABLE',
          `${options.what} failed ${attempt} times in ${Math.round(options.retryForMs / 1000)} s; last error: ` +
            `${options.redact(messageOf(error))}. Nothing partial was left: run the command again once the ` +
            'store is back, it goes on where it stopped.',
          { cause: error },
        );
      }
      options.onRetry?.(error, attempt);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

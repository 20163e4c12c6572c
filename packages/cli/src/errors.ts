import { redactCredentials } from '@cagey-sessions/core/adapter-kit';
import { EXIT, type ExitCode } from './exit-codes.js';

/** Stable codes of the errors the command line reports. */
export type CliErrorCode =
  | 'USAGE'
  | 'INVALID_URL'
  | 'STORE_UNREACHABLE'
  | 'CREDENTIALS_REFUSED'
  | 'TABLE_MISSING'
  | 'UNSUPPORTED_STORE'
  | 'INVALID_INPUT';

const EXIT_OF: Record<CliErrorCode, ExitCode> = {
  USAGE: EXIT.usage,
  INVALID_URL: EXIT.usage,
  UNSUPPORTED_STORE: EXIT.usage,
  INVALID_INPUT: EXIT.usage,
  TABLE_MISSING: EXIT.usage,
  STORE_UNREACHABLE: EXIT.unreachable,
  CREDENTIALS_REFUSED: EXIT.unreachable,
};

/** An error the command line explains to its user and turns into an exit code. */
export class CliError extends Error {
  override name = 'CliError';
  readonly code: CliErrorCode;
  readonly exitCode: ExitCode;

  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.exitCode = EXIT_OF[code];
  }
}

/**
 * Removes credentials from text that is about to be printed: `user:password@` in any URL, and every password
 * known to the run (those of the URLs given, registered with `rememberSecret`).
 */
export class Redactor {
  readonly #secrets = new Set<string>();

  rememberSecret(secret: string | undefined): void {
    if (secret === undefined || secret.length < 3) return;
    this.#secrets.add(secret);
    this.#secrets.add(encodeURIComponent(secret));
  }

  text(text: string): string {
    let clean = redactCredentials(text);
    for (const secret of this.#secrets) clean = clean.replaceAll(secret, '***');
    return clean;
  }
}

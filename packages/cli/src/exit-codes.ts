/**
 * The process exit codes of `cagey-sessions`, one per outcome a script may want to branch on. Documented in
 * the README (Exit codes); never renumbered.
 */
export const EXIT = {
  /** Everything done: every user copied (or already there), or no difference found. */
  ok: 0,
  /** Some users failed (a value the target refused, an unreadable import line) or an unexpected error. */
  failed: 1,
  /**
   * Bad usage: unknown command or flag, a missing or malformed value, an unsupported URL, a table to read that
   * does not exist. Nothing was done.
   */
  usage: 2,
  /** `verify` found differences (listed). */
  differences: 3,
  /** Conflicts: the target holds newer data for some users; they were skipped (see --overwrite, --live). */
  conflicts: 4,
  /** A store could not be reached (or stopped answering) and retries ran out, or it refused the credentials. */
  unreachable: 5,
  /** Stopped by Ctrl-C (SIGINT) or SIGTERM after the in-flight batches finished; run again to go on. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

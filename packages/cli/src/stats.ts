/** One user the run could not move or found different, for the summary. */
export interface Problem {
  userId: string;
  /** `conflict`: the target holds newer data; `error`: the store refused the user; or a `verify` difference. */
  kind: 'conflict' | 'error' | 'missing' | 'extra' | 'data' | 'version';
  message: string;
}

/** The first this many problems are kept for the summary; the rest are only counted (bounded memory). */
export const MAX_KEPT_PROBLEMS = 1000;

/** Counters of a run, updated as it goes and read by the progress display. */
export class RunStats {
  /** Users handled so far (whatever their outcome). */
  done = 0;
  /** Users in the source, once known (counted beside the run on a terminal); undefined while unknown. */
  total: number | undefined;
  copied = 0;
  /** The target already held the user at the same version (copied by an earlier run). */
  alreadyThere = 0;
  /** With --live: the target held a newer version (the player played since); not a conflict. */
  newerInTarget = 0;
  overwritten = 0;
  conflicts = 0;
  errors = 0;
  differences = 0;
  /** Retries of a failing store so far. */
  retries = 0;
  readonly problems: Problem[] = [];
  readonly startedAt = Date.now();

  problem(problem: Problem): void {
    if (problem.kind === 'conflict') this.conflicts++;
    else if (problem.kind === 'error') this.errors++;
    else this.differences++;
    if (this.problems.length < MAX_KEPT_PROBLEMS) this.problems.push(problem);
  }

  get problemCount(): number {
    return this.conflicts + this.errors + this.differences;
  }

  /** Users per second since the start. */
  rate(now = Date.now()): number {
    const seconds = (now - this.startedAt) / 1000;
    return seconds > 0 ? this.done / seconds : 0;
  }
}

import type { PersistenceAdapter, RestoreRecord, SaveResult } from '@cagey-sessions/core';
import { type RetryOptions, withRetry } from './retry.js';
import { batchesOf, runBounded, type SourceUser } from './source.js';
import type { RunStats } from './stats.js';
import { messageOf } from './stores.js';

export interface CopyOptions {
  target: PersistenceAdapter;
  /** Users per `restore` call. */
  batchSize: number;
  /** `restore` calls in flight at once. */
  concurrency: number;
  /** Reads the target to say what would happen; writes nothing. */
  dryRun: boolean;
  /** Replaces newer data in the target (written at the target's version + 1, so versions still only grow). */
  overwrite: boolean;
  /**
   * The target is live behind a `MigratingAdapter`: a newer version there is a player who played since, not a
   * conflict (counted as `newerInTarget`).
   */
  live: boolean;
  signal: AbortSignal;
  retry: RetryOptions;
  stats: RunStats;
}

/**
 * Copies users into the target with `restore`: each user is written with its source version only where the
 * target holds nothing or an older version, so a second run (after Ctrl-C, a crash, a store restart) finds
 * what the first one copied at the same version and writes nothing twice, and newer data is never replaced
 * unless `overwrite`.
 */
export async function copyUsers(pages: AsyncIterable<SourceUser[]>, options: CopyOptions): Promise<void> {
  await runBounded(batchesOf(pages, options.batchSize), options.concurrency, options.signal, (batch) =>
    options.dryRun ? dryRunBatch(batch, options) : copyBatch(batch, options),
  );
}

async function copyBatch(batch: SourceUser[], options: CopyOptions): Promise<void> {
  const { target, stats } = options;
  const records: RestoreRecord[] = batch.map(({ userId, userData, version }) => ({
    userId,
    userData,
    version,
  }));
  const results = await withRetry(() => target.restore!(records), options.retry);
  const overwrites: { user: SourceUser; currentVersion: number }[] = [];
  results.forEach((result, index) => {
    const user = batch[index]!;
    const outcome = classify(user, result, options);
    if (outcome === 'overwrite') overwrites.push({ user, currentVersion: conflictVersion(result) });
  });
  if (overwrites.length > 0) await overwriteNewer(overwrites, options);
  stats.done += batch.length - overwrites.length;
}

type Outcome = 'done' | 'overwrite';

function classify(user: SourceUser, result: SaveResult | undefined, options: CopyOptions): Outcome {
  const { stats } = options;
  if (result === undefined) {
    stats.problem({
      userId: user.userId,
      kind: 'error',
      message: 'the target returned no result for this user',
    });
    return 'done';
  }
  if (result.status === 'ok') {
    stats.copied++;
    return 'done';
  }
  if (result.status === 'error') {
    stats.problem({ userId: user.userId, kind: 'error', message: messageOf(result.error) });
    return 'done';
  }
  if (result.currentVersion === user.version) {
    stats.alreadyThere++;
    return 'done';
  }
  if (options.live) {
    stats.newerInTarget++;
    return 'done';
  }
  if (options.overwrite) return 'overwrite';
  stats.problem({
    userId: user.userId,
    kind: 'conflict',
    message: conflictMessage(user, result.currentVersion),
  });
  return 'done';
}

function conflictVersion(result: SaveResult | undefined): number {
  return result?.status === 'conflict' ? result.currentVersion : 0;
}

function conflictMessage(user: SourceUser, currentVersion: number): string {
  return currentVersion === 0
    ? `deleted in the target after version ${user.version} (source version ${user.version}); skipped`
    : `the target holds version ${currentVersion}, the source ${user.version}; skipped (newer data kept)`;
}

/** `--overwrite`: writes the source data over the target's newer version, conditionally on that version. */
async function overwriteNewer(
  items: { user: SourceUser; currentVersion: number }[],
  options: CopyOptions,
): Promise<void> {
  const { target, stats } = options;
  const records = items.map(({ user, currentVersion }) => ({
    userId: user.userId,
    userData: user.userData,
    expectedVersion: currentVersion,
  }));
  const results = await withRetry(() => target.save(records), options.retry);
  results.forEach((result, index) => {
    const { user, currentVersion } = items[index]!;
    if (result?.status === 'ok') stats.overwritten++;
    else if (result?.status === 'error') {
      stats.problem({ userId: user.userId, kind: 'error', message: messageOf(result.error) });
    } else {
      stats.problem({
        userId: user.userId,
        kind: 'conflict',
        message: `written in the target while being overwritten (version ${currentVersion} changed); skipped`,
      });
    }
  });
  stats.done += items.length;
}

/** `--dry-run`: reads each user's version in the target and counts what a real run would do. */
async function dryRunBatch(batch: SourceUser[], options: CopyOptions): Promise<void> {
  const { target, stats } = options;
  const stored = await withRetry(
    () => Promise.all(batch.map((user) => target.load(user.userId))),
    options.retry,
  );
  batch.forEach((user, index) => {
    const current = stored[index]?.version ?? 0;
    if (current < user.version) stats.copied++;
    else if (current === user.version) stats.alreadyThere++;
    else if (options.live) stats.newerInTarget++;
    else if (options.overwrite) stats.overwritten++;
    else stats.problem({ userId: user.userId, kind: 'conflict', message: conflictMessage(user, current) });
  });
  stats.done += batch.length;
}

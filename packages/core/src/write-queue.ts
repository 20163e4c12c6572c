import { randomBytes } from 'node:crypto';
import { conflictChannel, publish, retryChannel } from './channels.js';
import { Pacer } from './deadline.js';
import type { DirtyTracker, SentSnapshot } from './dirty-tracker.js';
import {
  CageySessionsError,
  ConflictError,
  describeUserId,
  type ErrorCode,
  PersistenceError,
  type UnsavedUser,
  ValidationError,
} from './errors.js';
import type { ResolvedPersistenceOptions } from './options.js';
import type { UserState } from './user-state.js';
import type { BatchTools, Entry, Outcome, Writer } from './writers.js';

/** What the write queue keeps per user. */
export interface WriteState {
  /** The stored version this data is based on (fences the next write); undefined writes unconditionally. */
  version: number | undefined;
  /** When the last write succeeded (0: never). */
  lastPersistedAt: number;
  inFlight: boolean;
  queued: boolean;
  /** A write was asked for while one was in flight: one follow-up write will carry the newest data. */
  requested: boolean;
  /** Callers waiting for the next write to start and finish. */
  waiters: Deferred[];
  failures: number;
  lastError: Error | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  /** The store holds newer data written elsewhere: nothing is written until the user is bound again. */
  conflict: ConflictError | undefined;
  /**
   * Writes whose outcome is unknown (the call failed after the data may have reached the store): write id ->
   * what they sent. A later "conflict" whose stored write id is one of these is that write, committed after all.
   */
  unacknowledged: Map<string, SentSnapshot> | undefined;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

/** What the write queue tells its owner about writes; the manager turns these into events and log lines. */
export interface WriteHooks<Owner> {
  /** Emits `persistUserData` for the user (undefined when nobody listens). */
  beforePersist(state: UserState<Owner>): Promise<void> | undefined;
  persisted(state: UserState<Owner>): void;
  failed(state: UserState<Owner>, error: Error): void;
  conflicted(state: UserState<Owner>, error: ConflictError): void;
  /** The user has nothing pending any more (the registry may forget a destroyed session's data). */
  settled(state: UserState<Owner>): void;
}

/** How many unacknowledged writes of one user are remembered (a long outage retries many times). */
const MAX_UNACKNOWLEDGED = 64;

/** Errors that retrying cannot fix: reported at once, never retried automatically. */
export function isPermanent(error: Error): boolean {
  if (error instanceof ValidationError || error instanceof ConflictError) return true;
  // An adapter's error arrives wrapped as PERSIST_FAILED; its own code is the cause's.
  for (const candidate of [error, error.cause]) {
    if (!(candidate instanceof CageySessionsError)) continue;
    if (candidate instanceof ValidationError) return true;
    if (PERMANENT_CODES.has(candidate.code)) return true;
  }
  return false;
}

const PERMANENT_CODES: ReadonlySet<ErrorCode> = new Set(['ADAPTER_CLOSED', 'ADAPTER_CONTRACT', 'NO_WRITER']);

export interface WriteCounters {
  /** Records written. */
  written: number;
  /** Record writes that failed (each retry counts). */
  failed: number;
  /** Writes refused because the store held newer data. */
  conflicts: number;
}

/**
 * Single flight per user with coalesced follow-ups, batches of bounded size and concurrency, group commit of
 * requests arriving together, retries with backoff, conflict fencing by version, and recognition of writes
 * whose acknowledgement was lost (by write id).
 */
export class WriteQueue<Owner> {
  readonly counters: WriteCounters = { written: 0, failed: 0, conflicts: 0 };
  readonly #writer: Writer;
  readonly #dirty: DirtyTracker<Owner>;
  readonly #options: ResolvedPersistenceOptions;
  readonly #hooks: WriteHooks<Owner>;
  /** Names this queue's manager in what it publishes for instrumentation. */
  readonly #source: object;
  readonly #queue = new Set<UserState<Owner>>();
  readonly #running = new Set<Entry<Owner>>();
  readonly #waitersOf = new Map<Entry<Owner>, Deferred[]>();
  /** Write ids are this prefix (random per queue) and a counter. */
  readonly #writeIdPrefix = `${randomBytes(9).toString('base64url')}.`;
  #writeCount = 0;
  #activeBatches = 0;
  #pumpScheduled = false;
  #closed = false;

  constructor(
    writer: Writer,
    dirty: DirtyTracker<Owner>,
    options: ResolvedPersistenceOptions,
    source: object,
    hooks: WriteHooks<Owner>,
  ) {
    this.#source = source;
    this.#writer = writer;
    this.#dirty = dirty;
    this.#options = options;
    this.#hooks = hooks;
  }

  newState(version: number | undefined): WriteState {
    return {
      version,
      lastPersistedAt: 0,
      inFlight: false,
      queued: false,
      requested: false,
      waiters: [],
      failures: 0,
      lastError: undefined,
      retryTimer: undefined,
      conflict: undefined,
      unacknowledged: undefined,
    };
  }

  /** The user was bound to other data at `version`: earlier failures and conflicts no longer apply. */
  rebase(state: UserState<Owner>, version: number | undefined): void {
    const write = state.write;
    this.#clearRetry(state);
    write.version = version;
    write.conflict = undefined;
    write.unacknowledged = undefined;
    write.failures = 0;
    write.lastError = undefined;
  }

  /** Asks for a write of the user's data; resolves once it is stored. */
  request(state: UserState<Owner>): Promise<void> {
    const write = state.write;
    if (write.conflict !== undefined) return Promise.reject(write.conflict);
    if (state.dropped || this.#closed) return Promise.resolve();
    const waiter = deferred();
    write.waiters.push(waiter);
    if (write.inFlight) write.requested = true;
    else this.#enqueue(state);
    return waiter.promise;
  }

  /** Nothing is pending for the user: no write queued, running or waiting for a retry, no error outstanding. */
  isIdle(state: UserState<Owner>): boolean {
    const write = state.write;
    return (
      !write.inFlight &&
      !write.queued &&
      write.waiters.length === 0 &&
      write.retryTimer === undefined &&
      write.lastError === undefined
    );
  }

  /** Nothing pending and a failure that retrying cannot fix: waiting longer will not store this user. */
  isStuck(state: UserState<Owner>): boolean {
    const write = state.write;
    if (write.inFlight || write.queued) return false;
    if (write.conflict !== undefined) return true;
    return write.lastError !== undefined && isPermanent(write.lastError);
  }

  /** The user as a report entry of users not saved: `error` given, else the last one, else "still running". */
  unsaved(state: UserState<Owner>, error?: Error): UnsavedUser {
    const write = state.write;
    let maybeStored = write.inFlight;
    if (!maybeStored && write.unacknowledged !== undefined) {
      const current = this.#dirty.currentDigest(state);
      for (const sent of write.unacknowledged.values()) if (sent.digest === current) maybeStored = true;
    }
    return {
      userId: state.userId,
      error:
        error ??
        write.conflict ??
        write.lastError ??
        new PersistenceError(
          'PERSIST_FAILED',
          `The write of user ${describeUserId(state.userId)} did not finish before the deadline.`,
        ),
      maybeStored,
    };
  }

  /** Records that `error` (invalid data, found by a flush scan) keeps the user from being written. */
  refuse(state: UserState<Owner>, error: Error): void {
    this.#fail(state, error);
  }

  /** The user is forgotten: nothing more is written for it. */
  forget(state: UserState<Owner>): void {
    this.#clearRetry(state);
    this.#queue.delete(state);
    state.write.queued = false;
  }

  /** Stops everything: timers cleared, queued users dropped, callers still waiting rejected. */
  close(states: Iterable<UserState<Owner>>): void {
    this.#closed = true;
    const error = new PersistenceError(
      'SHUTDOWN_INCOMPLETE',
      'The session manager was destroyed before this write finished.',
    );
    for (const waiters of this.#waitersOf.values()) for (const waiter of waiters) waiter.reject(error);
    for (const state of states) {
      for (const waiter of state.write.waiters) waiter.reject(error);
      this.forget(state);
    }
    this.#queue.clear();
  }

  stats(states: Iterable<UserState<Owner>>): { inFlight: number; queued: number; retrying: number } {
    let inFlight = 0;
    let retrying = 0;
    for (const state of states) {
      if (state.write.inFlight) inFlight++;
      if (state.write.retryTimer !== undefined) retrying++;
    }
    return { inFlight, queued: this.#queue.size, retrying };
  }

  #enqueue(state: UserState<Owner>): void {
    this.#clearRetry(state);
    if (state.write.queued) return;
    state.write.queued = true;
    this.#queue.add(state);
    this.#schedulePump();
  }

  /**
   * Starts batches in the check phase: requests from every I/O callback of this loop turn share one batch, and
   * a batch that settles at once (a store that refuses connections) does not start the next one in the same
   * stretch of the event loop.
   */
  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#activeBatches < this.#options.concurrency && this.#queue.size > 0) {
      const batch = this.#takeBatch();
      if (batch.length === 0) continue;
      this.#activeBatches++;
      const abandoned: Promise<unknown>[] = [];
      void this.#runBatch(batch, abandoned)
        .then(() => this.#outlast(abandoned))
        .finally(() => {
          this.#activeBatches--;
          this.#schedulePump();
        });
    }
  }

  #takeBatch(): Entry<Owner>[] {
    const batch: Entry<Owner>[] = [];
    for (const state of this.#queue) {
      if (batch.length >= this.#options.batchSize) break;
      const write = state.write;
      this.#queue.delete(state);
      write.queued = false;
      const waiters = write.waiters;
      write.waiters = [];
      write.requested = false;
      if (state.dropped) {
        for (const waiter of waiters) waiter.resolve();
        continue;
      }
      if (write.conflict !== undefined) {
        for (const waiter of waiters) waiter.reject(write.conflict);
        continue;
      }
      write.inFlight = true;
      const entry: Entry<Owner> = {
        state,
        generation: state.generation,
        expectedVersion: write.version,
        writeId: this.#writeIdPrefix + (++this.#writeCount).toString(36),
        snapshot: this.#dirty.take(state),
      };
      this.#waitersOf.set(entry, waiters);
      batch.push(entry);
    }
    return batch;
  }

  /**
   * Waits until store calls the batch gave up on have settled, or one more `callTimeout` has passed (a call
   * that hangs for good must not hold its place forever).
   */
  async #outlast(abandoned: Promise<unknown>[]): Promise<void> {
    if (abandoned.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#options.callTimeout);
      timer.unref();
    });
    await Promise.race([Promise.allSettled(abandoned), limit]);
    clearTimeout(timer);
  }

  async #runBatch(batch: Entry<Owner>[], abandoned: Promise<unknown>[]): Promise<void> {
    for (const entry of batch) this.#running.add(entry);
    try {
      const tools: BatchTools<Owner> = { ...this.#tools, abandoned: (pending) => abandoned.push(pending) };
      const outcomes = await this.#writer.write(batch, tools);
      const pace = new Pacer();
      for (let i = 0; i < batch.length; i++) {
        if (pace.due()) await pace.yield();
        this.#settle(batch[i]!, outcomes[i]!);
      }
    } finally {
      for (const entry of batch) {
        this.#running.delete(entry);
        this.#waitersOf.delete(entry);
      }
    }
  }

  readonly #tools: Omit<BatchTools<Owner>, 'abandoned'> = {
    prepare: async (entries) => {
      const settled = new Map<Entry<Owner>, Outcome>();
      const toWrite: Entry<Owner>[] = [];
      const pace = new Pacer();
      for (const entry of entries) {
        if (pace.due()) await pace.yield();
        try {
          entry.snapshot ??= this.#dirty.snapshot(entry.state);
        } catch (error) {
          settled.set(entry, { status: 'error', error: error as Error, reachedStore: false });
          continue;
        }
        if (entry.snapshot.digest === entry.state.dirty.savedDigest)
          settled.set(entry, { status: 'unchanged' });
        else toWrite.push(entry);
      }
      return { settled, toWrite };
    },
    emit: async (entries) => {
      const results = new Map<Entry<Owner>, { listened: boolean; error?: Error }>();
      const listening: Promise<void>[] = [];
      for (const entry of entries) {
        const emitted = this.#hooks.beforePersist(entry.state);
        const result: { listened: boolean; error?: Error } = { listened: emitted !== undefined };
        results.set(entry, result);
        if (emitted !== undefined) {
          listening.push(
            emitted.catch((error: unknown) => {
              result.error = error instanceof Error ? error : new Error(String(error));
            }),
          );
        }
      }
      if (listening.length > 0) await Promise.all(listening);
      return results;
    },
  };

  /** Applies a write's outcome to the user and to the callers waiting for it. */
  #settle(entry: Entry<Owner>, outcome: Outcome): void {
    const { state } = entry;
    const write = state.write;
    const waiters = this.#waitersOf.get(entry) ?? [];
    write.inFlight = false;
    const current = !state.dropped && entry.generation === state.generation;
    if (outcome.status === 'conflict') {
      const sent =
        current && outcome.currentWriteId !== undefined
          ? write.unacknowledged?.get(outcome.currentWriteId)
          : undefined;
      // The store holds this node's own earlier write, whose acknowledgement was lost: not a conflict.
      if (sent !== undefined) this.#recover(entry, waiters, outcome.currentVersion, sent);
      else this.#conflict(entry, waiters, outcome.currentVersion, current);
    } else if (outcome.status === 'error') {
      this.counters.failed++;
      if (current && outcome.reachedStore) this.#rememberUnacknowledged(state, entry);
      const error = this.#failure(state, outcome.error);
      for (const waiter of waiters) waiter.reject(error);
      if (current) this.#fail(state, error);
    } else {
      if (outcome.status === 'ok') this.counters.written++;
      if (current) {
        if (outcome.status === 'ok') {
          if (outcome.version !== undefined) write.version = outcome.version;
          write.lastPersistedAt = Date.now();
          write.unacknowledged = undefined;
        }
        this.#dirty.saved(state, entry.snapshot!);
        write.failures = 0;
        write.lastError = undefined;
        this.#clearRetry(state);
      }
      for (const waiter of waiters) waiter.resolve();
      if (current && outcome.status === 'ok') this.#hooks.persisted(state);
    }
    if (state.dropped || this.#closed) return;
    if (write.requested || write.waiters.length > 0) this.#enqueue(state);
    else this.#hooks.settled(state);
  }

  /**
   * An earlier write of this user, whose acknowledgement was lost, committed `sent` at `version`. The user is
   * now based on that version; the entry's newer data, if any, is written again on top of it.
   */
  #recover(entry: Entry<Owner>, waiters: Deferred[], version: number, sent: SentSnapshot): void {
    const { state } = entry;
    const write = state.write;
    write.version = version;
    write.unacknowledged = undefined;
    write.lastPersistedAt = Date.now();
    write.failures = 0;
    write.lastError = undefined;
    this.#clearRetry(state);
    this.#dirty.saved(state, sent);
    this.counters.written++;
    if (entry.snapshot!.digest === sent.digest) {
      for (const waiter of waiters) waiter.resolve();
    } else {
      // The entry's callers wait for the follow-up write of the newest data.
      write.waiters.unshift(...waiters);
    }
    this.#hooks.persisted(state);
  }

  #conflict(entry: Entry<Owner>, waiters: Deferred[], currentVersion: number, current: boolean): void {
    const { state } = entry;
    this.counters.conflicts++;
    const error = new ConflictError(state.userId, entry.expectedVersion ?? 0, currentVersion);
    for (const waiter of waiters) waiter.reject(error);
    if (!current) return;
    state.write.conflict = error;
    state.write.unacknowledged = undefined;
    this.#clearRetry(state);
    publish(conflictChannel, () => ({
      manager: this.#source,
      userId: state.userId,
      expectedVersion: error.expectedVersion,
      currentVersion,
    }));
    this.#hooks.conflicted(state, error);
  }

  /**
   * The error a failed write of `state` is reported with: invalid data as it is; anything else as a
   * `PersistenceError` naming the user in `unsaved` (PERSIST_FAILED around a driver's error).
   */
  #failure(state: UserState<Owner>, cause: Error): Error {
    if (cause instanceof ValidationError) return cause;
    const unsaved = [this.unsaved(state, cause)];
    // One is built per user of a failed batch (thousands when the store is down), so without a stack: it
    // would show only the pipeline; the cause keeps the store's.
    return withoutStack(() =>
      cause instanceof PersistenceError
        ? new PersistenceError(cause.code, cause.message, { cause: cause.cause, unsaved })
        : new PersistenceError(
            'PERSIST_FAILED',
            `Could not save user ${describeUserId(state.userId)}: ${cause.message}`,
            {
              cause,
              unsaved,
            },
          ),
    );
  }

  #rememberUnacknowledged(state: UserState<Owner>, entry: Entry<Owner>): void {
    const write = state.write;
    write.unacknowledged ??= new Map();
    write.unacknowledged.set(entry.writeId, { digest: entry.snapshot!.digest, marks: entry.snapshot!.marks });
    if (write.unacknowledged.size > MAX_UNACKNOWLEDGED) {
      write.unacknowledged.delete(write.unacknowledged.keys().next().value!);
    }
  }

  #fail(state: UserState<Owner>, error: Error): void {
    const write = state.write;
    write.failures++;
    write.lastError = error;
    // Invalid data does not become valid by waiting, nor does a closed adapter open again: such users are
    // written again only when asked or at the next flush.
    if (!isPermanent(error) && !this.#closed) {
      this.#clearRetry(state);
      const delayMs = this.backoff(write.failures);
      publish(retryChannel, () => ({
        manager: this.#source,
        userId: state.userId,
        failures: write.failures,
        delayMs,
        error,
      }));
      write.retryTimer = setTimeout(() => {
        write.retryTimer = undefined;
        if (state.dropped) return;
        if (write.inFlight) write.requested = true;
        else this.#enqueue(state);
      }, delayMs);
      write.retryTimer.unref();
    }
    this.#hooks.failed(state, error);
  }

  /** Exponential backoff with jitter: half the ceiling plus a random part of the other half. */
  backoff(failures: number): number {
    const { retryInitialDelay, retryMaxDelay } = this.#options;
    const ceiling = Math.min(retryMaxDelay, retryInitialDelay * 2 ** Math.min(failures - 1, 30));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  #clearRetry(state: UserState<Owner>): void {
    if (state.write.retryTimer !== undefined) {
      clearTimeout(state.write.retryTimer);
      state.write.retryTimer = undefined;
    }
  }
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A waiter nobody awaits (an automatic flush's) must not surface as an unhandled rejection.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

function withoutStack<E>(build: () => E): E {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return build();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

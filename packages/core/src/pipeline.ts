import { setImmediate as nextMacrotask } from 'node:timers/promises';
import {
  ConflictError,
  describeUserId,
  PersistenceError,
  toError,
  type UnsavedUser,
  ValidationError,
} from './errors.js';
import type { ResolvedPersistenceOptions } from './options.js';
import type { PersistenceAdapter, SaveRecord, SaveResult, UserId } from './types.js';
import { checkUserData, digest } from './user-data.js';

/** The persistence state of one user, shared by the session bound to it and by its unsaved data after destroy. */
export interface UserState<Owner> {
  readonly key: string;
  readonly userId: UserId;
  /** The session the user is bound to, or was last bound to. */
  owner: Owner;
  /** The owner was destroyed with this data still unsaved: it is kept for retry until stored or shutdown. */
  orphan: boolean;
  /** The live object game code mutates. */
  userData: object;
  /** The stored version this data is based on (fences the next write); undefined writes unconditionally. */
  version: number | undefined;
  /** Digest of the data last known to be in the store. */
  savedDigest: string | undefined;
  /** When the last write succeeded (0: never); flushes write the least recently persisted first. */
  lastPersistedAt: number;
  /** Bumped when the state is bound to new data, so a write of the old data does not overwrite the new bookkeeping. */
  generation: number;
  inFlight: boolean;
  queued: boolean;
  /** A write was asked for while one was in flight: one follow-up write will carry the newest data. */
  requested: boolean;
  /** Callers waiting for the next write to start and finish. */
  waiters: Deferred[];
  /** Taken by a flush scan; reused by the batch unless a newer request wants fresher data. */
  snapshot: Snapshot | undefined;
  failures: number;
  lastError: Error | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  conflict: ConflictError | undefined;
  dropped: boolean;
}

interface Snapshot {
  json: string;
  digest: string;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

interface Entry<Owner> {
  state: UserState<Owner>;
  waiters: Deferred[];
  generation: number;
  snapshot: Snapshot | undefined;
  expectedVersion: number | undefined;
  /** Set when the entry failed before reaching the adapter (a listener or validation error). */
  error?: Error;
  /** The entry's data changed and was handed to the writer. */
  sent?: boolean;
}

/** A write's outcome; `version` is undefined when listeners, not an adapter, did the writing. */
type Outcome = SaveResult | { status: 'ok'; version: undefined };

/** What the pipeline tells its owner; the manager turns these into events and log lines. */
export interface PipelineHooks<Owner> {
  /** Emits `persistUserData` for the user (undefined when nobody listens). Without an adapter, this is the write. */
  beforePersist(state: UserState<Owner>): Promise<void> | undefined;
  persisted(state: UserState<Owner>): void;
  failed(state: UserState<Owner>, error: Error): void;
  conflicted(state: UserState<Owner>, error: ConflictError): void;
  /** Data changed but there is neither an adapter nor a `persistUserData` listener to write it (said once). */
  noWriter(): void;
}

export interface PipelineStats {
  /** Users whose write is running now. */
  inFlight: number;
  /** Users waiting for a batch. */
  queued: number;
  /** Users waiting for an automatic retry after a failed write. */
  retrying: number;
  /** Destroyed sessions whose data is not stored yet (kept for retry). */
  orphaned: number;
  /** Records written since the manager was created. */
  written: number;
  /** Record writes that failed (each retry counts). */
  failed: number;
  /** Writes refused because the store held newer data. */
  conflicts: number;
  /** Duration of the last interval flush or `persistAllUserData()`, in ms. */
  lastFlushMs: number | undefined;
}

/**
 * Gets user data into the store: single flight per user with coalesced follow-ups, bounded batches and
 * concurrency, group commit of requests arriving together, dirty tracking by digest, retries with backoff,
 * conflict fencing by version, and a shutdown drain with a deadline.
 */
export class PersistencePipeline<Owner> {
  readonly states = new Map<string, UserState<Owner>>();
  readonly #adapter: PersistenceAdapter | undefined;
  readonly #options: ResolvedPersistenceOptions;
  readonly #hooks: PipelineHooks<Owner>;
  readonly #queue = new Set<UserState<Owner>>();
  readonly #running = new Set<Entry<Owner>>();
  #activeBatches = 0;
  #pumpScheduled = false;
  #disposed = false;
  #warnedNoWriter = false;
  #written = 0;
  #failed = 0;
  #conflicts = 0;
  #lastFlushMs: number | undefined;

  constructor(
    adapter: PersistenceAdapter | undefined,
    options: ResolvedPersistenceOptions,
    hooks: PipelineHooks<Owner>,
  ) {
    this.#adapter = adapter;
    this.#options = options;
    this.#hooks = hooks;
  }

  /** Registers a user's data. `savedDigest` is known when the data was just loaded from the store. */
  bind(
    owner: Owner,
    userId: UserId,
    key: string,
    userData: object,
    version: number | undefined,
  ): UserState<Owner> {
    const existing = this.states.get(key);
    if (existing !== undefined) {
      // Unsaved data of an earlier session of this user: keep the same state, so its write in flight and the
      // new data's writes stay in order (single flight), but the old write no longer updates the bookkeeping.
      this.#clearRetry(existing);
      existing.owner = owner;
      existing.orphan = false;
      existing.userData = userData;
      existing.version = version;
      existing.savedDigest = undefined;
      existing.snapshot = undefined;
      existing.conflict = undefined;
      existing.failures = 0;
      existing.generation++;
      return existing;
    }
    const state: UserState<Owner> = {
      key,
      userId,
      owner,
      orphan: false,
      userData,
      version,
      savedDigest: undefined,
      lastPersistedAt: 0,
      generation: 0,
      inFlight: false,
      queued: false,
      requested: false,
      waiters: [],
      snapshot: undefined,
      failures: 0,
      lastError: undefined,
      retryTimer: undefined,
      conflict: undefined,
      dropped: false,
    };
    this.states.set(key, state);
    return state;
  }

  /** Adopts the unsaved data of a destroyed session of this user, if any: it is newer than the store's. */
  adoptOrphan(owner: Owner, key: string): UserState<Owner> | undefined {
    const state = this.states.get(key);
    if (state === undefined || !state.orphan) return undefined;
    state.owner = owner;
    state.orphan = false;
    return state;
  }

  /** Marks the user's current data as what the store holds (just loaded, or written elsewhere by the caller). */
  markSaved(state: UserState<Owner>): void {
    state.savedDigest = digest(JSON.stringify(state.userData));
  }

  /** Writes the user's current data now (if it changed); resolves when it is stored. */
  persist(state: UserState<Owner>): Promise<void> {
    return this.#request(state, true);
  }

  /**
   * The session is going away. With `keepUnsaved`, data that is not yet stored stays queued for retry as an
   * orphan until it is written or shutdown gives up; otherwise the user is forgotten.
   */
  release(state: UserState<Owner>, keepUnsaved: boolean): void {
    state.orphan = true;
    if (!keepUnsaved || this.#disposed || state.conflict !== undefined) this.#drop(state);
    else this.#forgetIfSettled(state);
  }

  /** Clears a conflict after the caller reloaded the user from the store. */
  rebase(state: UserState<Owner>, userData: object, version: number): void {
    state.userData = userData;
    state.version = version;
    state.conflict = undefined;
    state.snapshot = undefined;
    state.generation++;
    this.markSaved(state);
  }

  /**
   * Writes every user whose data changed, least recently persisted first, and resolves with the users that
   * could not be saved. `explicit` flushes also retry users waiting for their backoff.
   */
  async flush(explicit: boolean): Promise<UnsavedUser[]> {
    const started = performance.now();
    const unsaved: UnsavedUser[] = [];
    const writes: Promise<void>[] = [];
    const write = (state: UserState<Owner>) =>
      writes.push(
        this.#request(state, false).catch((error) => {
          unsaved.push({ userId: state.userId, error });
        }),
      );
    // Sorted before anything is serialised, so that each batch of dirty users found can be sent at once, in
    // least-recently-persisted order, while the scan serialises the next: the store works as the scan goes on.
    const states = [...this.states.values()].sort((a, b) => a.lastPersistedAt - b.lastPersistedAt);
    let found: UserState<Owner>[] = [];
    const sendFound = () => {
      for (const state of found) write(state);
      found = [];
    };
    let scanned = 0;
    for (const state of states) {
      // A long scan yields now and then so a large flush does not stall the game loop.
      if (++scanned % 1000 === 0) await nextMacrotask();
      if (state.dropped) continue;
      if (state.conflict !== undefined) {
        if (explicit) unsaved.push({ userId: state.userId, error: state.conflict });
        continue;
      }
      if (state.retryTimer !== undefined && !explicit) continue;
      if (state.inFlight || state.queued) {
        write(state);
        continue;
      }
      let snapshot: Snapshot;
      try {
        snapshot = this.#snapshot(state);
      } catch (error) {
        this.#fail(state, toError(error));
        unsaved.push({ userId: state.userId, error: toError(error) });
        continue;
      }
      if (snapshot.digest === state.savedDigest) {
        this.#forgetIfSettled(state);
        continue;
      }
      state.snapshot = snapshot;
      found.push(state);
      if (found.length === this.#options.batchSize) {
        sendFound();
        await nextMacrotask(); // lets the batch go out now
      }
    }
    sendFound();
    await Promise.all(writes);
    this.#lastFlushMs = performance.now() - started;
    return unsaved;
  }

  /**
   * Flushes and retries until every held user is stored or `timeoutMs` has passed; resolves with exactly the
   * users that were not saved (including writes still hanging at the deadline).
   */
  async drain(timeoutMs: number): Promise<UnsavedUser[]> {
    const deadline = performance.now() + timeoutMs;
    let attempt = 0;
    for (;;) {
      await nextMacrotask();
      if (this.#unsettled().length === 0) return [];
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      const unsaved = await withTimeout(this.flush(true), remaining);
      if (unsaved !== undefined && unsaved.length === 0) continue;
      if (unsaved?.every((u) => u.error instanceof ConflictError)) return unsaved;
      const pause = Math.min(this.#backoff(++attempt), deadline - performance.now());
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause).unref());
    }
    return this.#unsettled().map((state) => ({
      userId: state.userId,
      error:
        state.conflict ??
        state.lastError ??
        new PersistenceError(
          'PERSIST_FAILED',
          `The write of user ${describeUserId(state.userId)} did not finish before the deadline.`,
        ),
    }));
  }

  /** Stops everything: timers cleared, queued users dropped, callers still waiting rejected. */
  dispose(): void {
    this.#disposed = true;
    const error = new PersistenceError(
      'SHUTDOWN_INCOMPLETE',
      'The session manager was destroyed before this write finished.',
    );
    for (const entry of this.#running) for (const waiter of entry.waiters) waiter.reject(error);
    for (const state of this.states.values()) {
      for (const waiter of state.waiters) waiter.reject(error);
      this.#drop(state);
    }
    this.#queue.clear();
  }

  /** Whether the user's data differs from what the store holds (O(size of the data)). */
  isDirty(state: UserState<Owner>): boolean {
    try {
      return digest(JSON.stringify(state.userData)) !== state.savedDigest;
    } catch {
      return true;
    }
  }

  stats(): PipelineStats {
    let retrying = 0;
    let orphaned = 0;
    let inFlight = 0;
    for (const state of this.states.values()) {
      if (state.retryTimer !== undefined) retrying++;
      if (state.orphan) orphaned++;
      if (state.inFlight) inFlight++;
    }
    return {
      inFlight,
      queued: this.#queue.size,
      retrying,
      orphaned,
      written: this.#written,
      failed: this.#failed,
      conflicts: this.#conflicts,
      lastFlushMs: this.#lastFlushMs,
    };
  }

  /** Users whose data is not known to be stored. */
  #unsettled(): UserState<Owner>[] {
    return [...this.states.values()].filter(
      (state) =>
        !state.dropped &&
        (state.inFlight ||
          state.queued ||
          state.retryTimer !== undefined ||
          state.lastError !== undefined ||
          state.conflict !== undefined ||
          this.isDirty(state)),
    );
  }

  #request(state: UserState<Owner>, fresh: boolean): Promise<void> {
    if (state.conflict !== undefined) return Promise.reject(state.conflict);
    if (state.dropped || this.#disposed) return Promise.resolve();
    if (fresh) state.snapshot = undefined;
    const waiter = deferred();
    state.waiters.push(waiter);
    if (state.inFlight) state.requested = true;
    else this.#enqueue(state);
    return waiter.promise;
  }

  #enqueue(state: UserState<Owner>): void {
    this.#clearRetry(state);
    if (state.queued) return;
    state.queued = true;
    this.#queue.add(state);
    if (!this.#pumpScheduled) {
      this.#pumpScheduled = true;
      // Waiting for the check phase lets requests from every I/O callback of this loop turn share one batch.
      setImmediate(() => {
        this.#pumpScheduled = false;
        this.#pump();
      });
    }
  }

  #pump(): void {
    while (this.#activeBatches < this.#options.concurrency && this.#queue.size > 0) {
      const batch = this.#takeBatch();
      if (batch.length === 0) continue;
      this.#activeBatches++;
      void this.#runBatch(batch).finally(() => {
        this.#activeBatches--;
        this.#pump();
      });
    }
  }

  #takeBatch(): Entry<Owner>[] {
    const batch: Entry<Owner>[] = [];
    for (const state of this.#queue) {
      if (batch.length >= this.#options.batchSize) break;
      this.#queue.delete(state);
      state.queued = false;
      const waiters = state.waiters;
      state.waiters = [];
      state.requested = false;
      if (state.dropped) {
        for (const waiter of waiters) waiter.resolve();
        continue;
      }
      if (state.conflict !== undefined) {
        for (const waiter of waiters) waiter.reject(state.conflict);
        continue;
      }
      state.inFlight = true;
      batch.push({
        state,
        waiters,
        generation: state.generation,
        snapshot: state.snapshot,
        expectedVersion: state.version,
      });
      state.snapshot = undefined;
    }
    return batch;
  }

  async #runBatch(batch: Entry<Owner>[]): Promise<void> {
    for (const entry of batch) this.#running.add(entry);
    try {
      const adapter = this.#adapter;
      // Without an adapter the listeners are the write, so the snapshot must be the data they saw; with one,
      // listeners may still touch the data, so it is taken after them.
      if (adapter === undefined) for (const entry of batch) this.#snapshotEntry(entry);
      const listening: Promise<void>[] = [];
      let unwritten = false;
      for (const entry of batch) {
        if (entry.error !== undefined) continue;
        const emitted = this.#hooks.beforePersist(entry.state);
        if (emitted === undefined) {
          unwritten ||= adapter === undefined;
          continue;
        }
        if (adapter !== undefined) entry.snapshot = undefined;
        listening.push(
          emitted.catch((error) => {
            entry.error = toError(error);
          }),
        );
      }
      if (listening.length > 0) await Promise.all(listening);
      const toWrite: Entry<Owner>[] = [];
      for (const entry of batch) {
        if (entry.error !== undefined) continue;
        this.#snapshotEntry(entry);
        if (entry.error === undefined && entry.snapshot!.digest !== entry.state.savedDigest) {
          entry.sent = true;
          toWrite.push(entry);
        }
      }
      let results: SaveResult[] | Error | undefined;
      if (unwritten && toWrite.length > 0 && !this.#warnedNoWriter) {
        this.#warnedNoWriter = true;
        this.#hooks.noWriter();
      }
      if (adapter !== undefined && toWrite.length > 0) {
        const records: SaveRecord[] = toWrite.map((entry) => ({
          userId: entry.state.userId,
          userData: entry.state.userData,
          json: entry.snapshot!.json,
          expectedVersion: entry.expectedVersion,
        }));
        results = await adapter.save(records).then(
          (saved) =>
            Array.isArray(saved) && saved.length === records.length
              ? saved
              : new PersistenceError(
                  'ADAPTER_CONTRACT',
                  `Adapter "${adapter.name}" returned ${Array.isArray(saved) ? saved.length : 'no'} results for ${records.length} records.`,
                ),
          (error) => toError(error),
        );
      }
      let next = 0;
      for (const entry of batch) {
        if (entry.error !== undefined) this.#settle(entry, { status: 'error', error: entry.error });
        else if (!entry.sent) this.#settle(entry, undefined);
        else if (results === undefined) this.#settle(entry, { status: 'ok', version: undefined });
        else if (results instanceof Error) this.#settle(entry, { status: 'error', error: results });
        else this.#settle(entry, results[next++]!);
      }
    } finally {
      for (const entry of batch) this.#running.delete(entry);
    }
  }

  #snapshotEntry(entry: Entry<Owner>): void {
    if (entry.snapshot !== undefined || entry.error !== undefined) return;
    try {
      entry.snapshot = this.#snapshot(entry.state);
    } catch (error) {
      entry.error = toError(error);
    }
  }

  /** Serialises the user's data; validates it only when it changed, since only then will it be written. */
  #snapshot(state: UserState<Owner>): Snapshot {
    let json: string;
    try {
      json = JSON.stringify(state.userData);
    } catch (error) {
      checkUserData(state.userData); // names the offending path for BigInt and cycles
      throw error;
    }
    const snapshot = { json, digest: digest(json) };
    if (snapshot.digest !== state.savedDigest) checkUserData(state.userData);
    return snapshot;
  }

  /** Applies a write's outcome; `result` undefined means nothing needed writing. */
  #settle(entry: Entry<Owner>, result: Outcome | undefined): void {
    const { state } = entry;
    state.inFlight = false;
    const current = !state.dropped && entry.generation === state.generation;
    if (result === undefined || result.status === 'ok') {
      if (result !== undefined) this.#written++;
      if (current) {
        if (result !== undefined) {
          if (result.version !== undefined) state.version = result.version;
          state.lastPersistedAt = Date.now();
        }
        state.savedDigest = entry.snapshot!.digest;
        state.failures = 0;
        state.lastError = undefined;
        this.#clearRetry(state);
      }
      for (const waiter of entry.waiters) waiter.resolve();
      if (current && result !== undefined) this.#hooks.persisted(state);
    } else if (result.status === 'conflict') {
      this.#conflicts++;
      const error = new ConflictError(state.userId, entry.expectedVersion ?? 0, result.currentVersion);
      if (current) {
        state.conflict = error;
        this.#clearRetry(state);
      }
      for (const waiter of entry.waiters) waiter.reject(error);
      if (current) this.#hooks.conflicted(state, error);
    } else {
      this.#failed++;
      const error =
        result.error instanceof ValidationError || result.error instanceof PersistenceError
          ? result.error
          : new PersistenceError(
              'PERSIST_FAILED',
              `Could not save user ${describeUserId(state.userId)}: ${result.error.message}`,
              {
                cause: result.error,
              },
            );
      for (const waiter of entry.waiters) waiter.reject(error);
      if (current) this.#fail(state, error);
    }
    if (state.dropped || this.#disposed) return;
    if (state.requested || state.waiters.length > 0) this.#enqueue(state);
    else this.#forgetIfSettled(state);
  }

  #fail(state: UserState<Owner>, error: Error): void {
    state.failures++;
    state.lastError = error;
    // Invalid data does not become valid by waiting: it is written again only when asked or at the next flush.
    if (!(error instanceof ValidationError) && !this.#disposed) {
      this.#clearRetry(state);
      state.retryTimer = setTimeout(() => {
        state.retryTimer = undefined;
        if (!state.dropped && !state.inFlight) this.#enqueue(state);
        else if (state.inFlight) state.requested = true;
      }, this.#backoff(state.failures));
      state.retryTimer.unref();
    }
    this.#hooks.failed(state, error);
  }

  #backoff(failures: number): number {
    const { retryInitialDelay, retryMaxDelay } = this.#options;
    const ceiling = Math.min(retryMaxDelay, retryInitialDelay * 2 ** Math.min(failures - 1, 30));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  #clearRetry(state: UserState<Owner>): void {
    if (state.retryTimer !== undefined) {
      clearTimeout(state.retryTimer);
      state.retryTimer = undefined;
    }
  }

  /** An orphan whose data is stored and that has nothing pending is forgotten. */
  #forgetIfSettled(state: UserState<Owner>): void {
    if (
      state.orphan &&
      !state.inFlight &&
      !state.queued &&
      state.waiters.length === 0 &&
      state.retryTimer === undefined &&
      state.lastError === undefined &&
      !this.isDirty(state)
    ) {
      this.#drop(state);
    }
  }

  #drop(state: UserState<Owner>): void {
    state.dropped = true;
    this.#clearRetry(state);
    this.#queue.delete(state);
    state.queued = false;
    if (this.states.get(state.key) === state) this.states.delete(state.key);
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

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

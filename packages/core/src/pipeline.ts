import { randomBytes } from 'node:crypto';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { callAdapter, KeepAlive, withTimeout } from './deadline.js';
import {
  CageySessionsError,
  ConflictError,
  describeUserId,
  type ErrorCode,
  PersistenceError,
  toError,
  type UnsavedUser,
  ValidationError,
} from './errors.js';
import type { ResolvedPersistenceOptions } from './options.js';
import type { PersistenceAdapter, SaveRecord, UserId } from './types.js';
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
  /**
   * Writes of this user whose outcome is unknown (the call failed after the data may have reached the store):
   * write id -> digest of the data it carried. A later "conflict" whose stored write id is one of these is
   * that write, committed after all.
   */
  unacknowledged: Map<string, string> | undefined;
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
  writeId: string;
  /** Set when the entry failed before reaching the writer (a listener, validation, or no writer at all). */
  error?: Error;
  /** `persistUserData` listeners ran for this entry; without an adapter they are the write. */
  listened?: boolean;
  /** The entry's data changed and was handed to the writer. */
  sent?: boolean;
}

/**
 * A write's outcome: `unchanged` when nothing needed writing; `ok` without a version when listeners, not an
 * adapter, did the writing; an error that `reachedStore` may have been written anyway (its acknowledgement lost).
 */
type Outcome =
  | { status: 'unchanged' }
  | { status: 'ok'; version: number | undefined }
  | { status: 'conflict'; currentVersion: number; currentWriteId?: string | undefined }
  | { status: 'error'; error: Error; reachedStore: boolean };

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

/** What the pipeline tells its owner; the manager turns these into events and log lines. */
export interface PipelineHooks<Owner> {
  /** Emits `persistUserData` for the user (undefined when nobody listens). Without an adapter, this is the write. */
  beforePersist(state: UserState<Owner>): Promise<void> | undefined;
  persisted(state: UserState<Owner>): void;
  failed(state: UserState<Owner>, error: Error): void;
  conflicted(state: UserState<Owner>, error: ConflictError): void;
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
  /** Held while a caller awaits a write or a drain, so the process does not exit under it. */
  readonly keepAlive = new KeepAlive();
  /** Write ids are this prefix (unique per pipeline) and a counter. */
  readonly #writeIdPrefix = `${randomBytes(9).toString('base64url')}.`;
  #writeCount = 0;
  #activeBatches = 0;
  #pumpScheduled = false;
  #disposed = false;
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
      existing.unacknowledged = undefined;
      existing.failures = 0;
      existing.lastError = undefined;
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
      unacknowledged: undefined,
      dropped: false,
    };
    this.states.set(key, state);
    return state;
  }

  /**
   * Adopts the unsaved data of a destroyed session of this user, if any: it is newer than the store's. Data
   * that met a conflict is not adopted (the store holds newer data; the caller loads that instead).
   */
  adoptOrphan(owner: Owner, key: string): UserState<Owner> | undefined {
    const state = this.states.get(key);
    if (state === undefined || !state.orphan || state.conflict !== undefined) return undefined;
    state.owner = owner;
    state.orphan = false;
    return state;
  }

  /** Marks the user's current data as what the store holds (just loaded, or written elsewhere by the caller). */
  markSaved(state: UserState<Owner>): void {
    state.savedDigest = digest(JSON.stringify(state.userData));
  }

  /**
   * Writes the user's current data now (if it changed); resolves when it is stored. The process stays alive
   * until it settles.
   */
  persist(state: UserState<Owner>): Promise<void> {
    return this.keepAlive.during(this.#request(state, { fresh: true }));
  }

  /**
   * The session is going away. With `keep: 'unsaved'`, data that is not yet stored stays held as an orphan:
   * queued for retry until it is written, or (after a conflict) kept so that shutdown reports it. With
   * `keep: 'nothing'` the user is forgotten.
   */
  release(state: UserState<Owner>, keep: 'unsaved' | 'nothing'): void {
    state.orphan = true;
    if (keep === 'nothing' || this.#disposed) this.#drop(state);
    else this.#forgetIfSettled(state);
  }

  /** Clears a conflict after the caller reloaded the user from the store. */
  rebase(state: UserState<Owner>, userData: object, version: number): void {
    state.userData = userData;
    state.version = version;
    state.conflict = undefined;
    state.unacknowledged = undefined;
    state.lastError = undefined;
    state.snapshot = undefined;
    state.generation++;
    this.markSaved(state);
  }

  /**
   * Writes every user whose data changed, least recently persisted first, and resolves with the users that
   * could not be saved. An `explicit` flush (a caller awaits it) also retries users waiting for their backoff
   * and reports users held back by a conflict; an `interval` flush leaves both alone.
   */
  async flush(reason: 'explicit' | 'interval'): Promise<UnsavedUser[]> {
    const explicit = reason === 'explicit';
    const started = performance.now();
    const unsaved: UnsavedUser[] = [];
    const writes: Promise<void>[] = [];
    const write = (state: UserState<Owner>) =>
      writes.push(
        this.#request(state, { fresh: false }).catch((error) => {
          unsaved.push(this.#unsaved(state, error));
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
    const pace = new Pacer();
    for (const state of states) {
      await pace.yieldIfDue(); // a large flush must not stall the game loop

      if (state.dropped) continue;
      if (state.conflict !== undefined) {
        if (explicit) unsaved.push(this.#unsaved(state, state.conflict));
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
        unsaved.push(this.#unsaved(state, toError(error)));
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
   * users that were not saved. Users whose failure retrying cannot fix (a conflict, invalid data, a closed
   * adapter) end the wait as soon as they are all that is left. The process stays alive until it resolves.
   */
  drain(timeoutMs: number): Promise<UnsavedUser[]> {
    return this.keepAlive.during(this.#drain(timeoutMs));
  }

  async #drain(timeoutMs: number): Promise<UnsavedUser[]> {
    const deadline = performance.now() + timeoutMs;
    let attempt = 0;
    for (;;) {
      await nextMacrotask();
      const open = this.#unsettled();
      if (open.length === 0) return [];
      if (open.every((state) => this.#isFinal(state))) return open.map((state) => this.#unsaved(state));
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      const unsaved = await withTimeout(this.flush('explicit'), remaining);
      if (unsaved !== undefined && unsaved.length === 0) continue;
      if (unsaved?.every((user) => isPermanent(user.error))) continue;
      const pause = Math.min(this.#backoff(++attempt), deadline - performance.now());
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause).unref());
    }
    return this.#unsettled().map((state) => this.#unsaved(state));
  }

  /** How `state` is reported as not saved: the given error, else its last one, else "still being written". */
  #unsaved(state: UserState<Owner>, error?: Error): UnsavedUser {
    let maybeStored = state.inFlight;
    if (!maybeStored && state.unacknowledged !== undefined) {
      const current = this.#currentDigest(state);
      for (const sent of state.unacknowledged.values()) if (sent === current) maybeStored = true;
    }
    return {
      userId: state.userId,
      error:
        error ??
        state.conflict ??
        state.lastError ??
        new PersistenceError(
          'PERSIST_FAILED',
          `The write of user ${describeUserId(state.userId)} did not finish before the deadline.`,
        ),
      maybeStored,
    };
  }

  #currentDigest(state: UserState<Owner>): string | undefined {
    try {
      return digest(JSON.stringify(state.userData));
    } catch {
      return undefined;
    }
  }

  /** Nothing pending and a failure that retrying cannot fix: waiting longer will not store this user. */
  #isFinal(state: UserState<Owner>): boolean {
    if (state.inFlight || state.queued) return false;
    if (state.conflict !== undefined) return true;
    return state.lastError !== undefined && isPermanent(state.lastError);
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

  /** Write ids are unique per attempt: a prefix random to this pipeline and a counter. */
  #nextWriteId(): string {
    return this.#writeIdPrefix + (++this.#writeCount).toString(36);
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

  /** Asks for a write of the user; `fresh` drops a snapshot a flush scan took, so the newest data is written. */
  #request(state: UserState<Owner>, { fresh }: { fresh: boolean }): Promise<void> {
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
      void this.#runBatch(batch).finally(() => {
        this.#activeBatches--;
        this.#schedulePump();
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
        writeId: this.#nextWriteId(),
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
      const pace = new Pacer();
      if (adapter === undefined) {
        for (const entry of batch) {
          await pace.yieldIfDue();
          this.#snapshotEntry(entry);
        }
      }
      const listening: Promise<void>[] = [];
      for (const entry of batch) {
        if (entry.error !== undefined) continue;
        const emitted = this.#hooks.beforePersist(entry.state);
        if (emitted === undefined) continue;
        entry.listened = true;
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
        await pace.yieldIfDue();
        this.#snapshotEntry(entry);
        if (entry.error !== undefined || entry.snapshot!.digest === entry.state.savedDigest) continue;
        if (adapter === undefined && !entry.listened) {
          entry.error = noWriterError(entry.state.userId);
          continue;
        }
        entry.sent = true;
        toWrite.push(entry);
      }
      const results = adapter !== undefined && toWrite.length > 0 ? await this.#save(adapter, toWrite) : [];
      let next = 0;
      for (const entry of batch) {
        await pace.yieldIfDue();
        if (entry.error !== undefined) {
          this.#settle(entry, { status: 'error', error: entry.error, reachedStore: false });
        } else if (!entry.sent) this.#settle(entry, { status: 'unchanged' });
        else if (adapter === undefined) this.#settle(entry, { status: 'ok', version: undefined });
        else this.#settle(entry, results[next++]!);
      }
    } finally {
      for (const entry of batch) this.#running.delete(entry);
    }
  }

  /**
   * Hands the entries to the adapter and returns one checked outcome per entry. A call that throws, rejects,
   * times out or answers with the wrong shape becomes an error outcome for its entries; nothing escapes.
   */
  async #save(adapter: PersistenceAdapter, entries: Entry<Owner>[]): Promise<Outcome[]> {
    const records: SaveRecord[] = entries.map((entry) => ({
      userId: entry.state.userId,
      userData: entry.state.userData,
      json: entry.snapshot!.json,
      expectedVersion: entry.expectedVersion,
      writeId: entry.writeId,
    }));
    let saved: unknown;
    try {
      saved = await callAdapter(adapter.name, 'save', this.#options.callTimeout, () => adapter.save(records));
    } catch (error) {
      const failure: Outcome = {
        status: 'error',
        error: toError(error),
        reachedStore: mayHaveReachedStore(error),
      };
      return entries.map(() => failure);
    }
    if (!Array.isArray(saved) || saved.length !== records.length) {
      const error = contractError(
        adapter,
        `returned ${Array.isArray(saved) ? `${saved.length} results` : describeValue(saved)} for ${records.length} records`,
      );
      return entries.map(() => ({ status: 'error', error, reachedStore: true }));
    }
    return saved.map((result) => checkResult(adapter, result));
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

  /** Applies a write's outcome to the user and to the callers waiting for it. */
  #settle(entry: Entry<Owner>, result: Outcome): void {
    const { state } = entry;
    state.inFlight = false;
    const current = !state.dropped && entry.generation === state.generation;
    if (result.status === 'conflict' && current) {
      const sent =
        result.currentWriteId === undefined ? undefined : state.unacknowledged?.get(result.currentWriteId);
      // The store holds this node's own earlier write, whose acknowledgement was lost: not a conflict.
      if (sent !== undefined) this.#recover(entry, result.currentVersion, sent);
      else this.#conflict(entry, result.currentVersion);
    } else if (result.status === 'conflict') {
      this.#conflicts++;
      const error = new ConflictError(state.userId, entry.expectedVersion ?? 0, result.currentVersion);
      for (const waiter of entry.waiters) waiter.reject(error);
    } else if (result.status === 'error') {
      this.#failed++;
      if (current && result.reachedStore) this.#rememberUnacknowledged(state, entry);
      const error = this.#failure(state, result.error);
      for (const waiter of entry.waiters) waiter.reject(error);
      if (current) this.#fail(state, error);
    } else {
      if (result.status === 'ok') this.#written++;
      if (current) {
        if (result.status === 'ok') {
          if (result.version !== undefined) state.version = result.version;
          state.lastPersistedAt = Date.now();
          state.unacknowledged = undefined;
        }
        state.savedDigest = entry.snapshot!.digest;
        state.failures = 0;
        state.lastError = undefined;
        this.#clearRetry(state);
      }
      for (const waiter of entry.waiters) waiter.resolve();
      if (current && result.status === 'ok') this.#hooks.persisted(state);
    }
    if (state.dropped || this.#disposed) return;
    if (state.requested || state.waiters.length > 0) this.#enqueue(state);
    else this.#forgetIfSettled(state);
  }

  /**
   * An earlier write of this user, whose acknowledgement was lost, committed `sent` (a digest) at `version`.
   * The user is now based on that version; the entry's newer data, if any, is written again on top of it.
   */
  #recover(entry: Entry<Owner>, version: number, sent: string): void {
    const { state } = entry;
    state.version = version;
    state.savedDigest = sent;
    state.unacknowledged = undefined;
    state.lastPersistedAt = Date.now();
    state.failures = 0;
    state.lastError = undefined;
    this.#clearRetry(state);
    this.#written++;
    if (entry.snapshot!.digest === sent) {
      for (const waiter of entry.waiters) waiter.resolve();
    } else {
      // The entry's callers wait for the follow-up write of the newest data.
      state.waiters.unshift(...entry.waiters);
    }
    this.#hooks.persisted(state);
  }

  #conflict(entry: Entry<Owner>, currentVersion: number): void {
    const { state } = entry;
    this.#conflicts++;
    const error = new ConflictError(state.userId, entry.expectedVersion ?? 0, currentVersion);
    state.conflict = error;
    state.unacknowledged = undefined;
    this.#clearRetry(state);
    for (const waiter of entry.waiters) waiter.reject(error);
    this.#hooks.conflicted(state, error);
  }

  /**
   * The error a failed write of `state` is reported with: invalid data as it is; anything else as a
   * `PersistenceError` naming the user in `unsaved` (PERSIST_FAILED around a driver's error).
   */
  #failure(state: UserState<Owner>, cause: Error): Error {
    if (cause instanceof ValidationError) return cause;
    const unsaved = [this.#unsaved(state, cause)];
    // One is built per user of a failed batch (thousands when the store is down), so without a stack: it
    // would show only the pipeline; the cause keeps the store's.
    return withoutStack(() =>
      cause instanceof PersistenceError
        ? new PersistenceError(cause.code, cause.message, { cause: cause.cause, unsaved })
        : new PersistenceError(
            'PERSIST_FAILED',
            `Could not save user ${describeUserId(state.userId)}: ${cause.message}`,
            { cause, unsaved },
          ),
    );
  }

  #rememberUnacknowledged(state: UserState<Owner>, entry: Entry<Owner>): void {
    state.unacknowledged ??= new Map();
    state.unacknowledged.set(entry.writeId, entry.snapshot!.digest);
    if (state.unacknowledged.size > MAX_UNACKNOWLEDGED) {
      state.unacknowledged.delete(state.unacknowledged.keys().next().value!);
    }
  }

  #fail(state: UserState<Owner>, error: Error): void {
    state.failures++;
    state.lastError = error;
    // Invalid data does not become valid by waiting, nor does a closed adapter open again: such users are
    // written again only when asked or at the next flush.
    if (!isPermanent(error) && !this.#disposed) {
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

/** Codes of failures that happen before a request leaves: nothing of the batch was sent. */
const NOT_SENT_CODES: ReadonlySet<unknown> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ADAPTER_CLOSED',
]);

/**
 * Whether a rejected `save` may have written anything. The contract only says nothing may be assumed
 * written, so every failure counts as "maybe", except those whose code (on the error or in its cause chain)
 * says the request never left.
 */
function mayHaveReachedStore(error: unknown): boolean {
  let current = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if (NOT_SENT_CODES.has((current as { code?: unknown }).code)) return false;
    current = (current as { cause?: unknown }).cause;
  }
  return true;
}

function noWriterError(userId: UserId): PersistenceError {
  return new PersistenceError(
    'NO_WRITER',
    `User ${describeUserId(userId)} has changes but nothing can store them: the session manager has no adapter ` +
      "and no 'persistUserData' listener. Pass { adapter } to create(), or listen to 'persistUserData'.",
  );
}

function contractError(adapter: PersistenceAdapter, what: string): PersistenceError {
  return new PersistenceError(
    'ADAPTER_CONTRACT',
    `Adapter "${adapter.name}" broke the PersistenceAdapter contract: save() ${what}.`,
  );
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/** One `save` result, checked: anything but a well-formed result is a contract violation of that record. */
function checkResult(adapter: PersistenceAdapter, result: unknown): Outcome {
  const r = result as Partial<
    Record<'status' | 'version' | 'currentVersion' | 'currentWriteId' | 'error', unknown>
  >;
  const isVersion = (value: unknown, min: number) =>
    typeof value === 'number' && Number.isSafeInteger(value) && value >= min;
  if (typeof result === 'object' && result !== null) {
    if (r.status === 'ok' && isVersion(r.version, 1)) return { status: 'ok', version: r.version as number };
    if (
      r.status === 'conflict' &&
      isVersion(r.currentVersion, 0) &&
      (r.currentWriteId === undefined || r.currentWriteId === null || typeof r.currentWriteId === 'string')
    ) {
      return {
        status: 'conflict',
        currentVersion: r.currentVersion as number,
        currentWriteId: (r.currentWriteId as string | null | undefined) ?? undefined,
      };
    }
    if (r.status === 'error' && r.error instanceof Error) {
      return { status: 'error', error: r.error, reachedStore: true };
    }
  }
  const shown =
    typeof result === 'object' && result !== null
      ? `status ${JSON.stringify(r.status)}`
      : describeValue(result);
  return {
    status: 'error',
    error: contractError(adapter, `returned a malformed result (${shown}) for a record`),
    reachedStore: true,
  };
}

/**
 * Splits a long loop into stretches of at most `SLICE_MS` of work: a game server's tick is 16-50 ms, and a
 * flush or a shutdown over thousands of users must not hold the event loop for longer than a slice.
 */
export class Pacer {
  static readonly SLICE_MS = 4;
  #since = performance.now();

  /** Resolves at once within a slice (synchronously enough: one microtask), else after the event loop turned. */
  async yieldIfDue(): Promise<void> {
    if (performance.now() - this.#since < Pacer.SLICE_MS) return;
    await nextMacrotask();
    this.#since = performance.now();
  }
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

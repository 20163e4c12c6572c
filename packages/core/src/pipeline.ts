import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { type FlushMessage, flushChannel, traced } from './channels.js';
import { KeepAlive, Pacer, withTimeout } from './deadline.js';
import { DirtyTracker } from './dirty-tracker.js';
import type { UnsavedUser } from './errors.js';
import type { ResolvedPersistenceOptions } from './options.js';
import type { PersistenceAdapter, StoredUser, UserId } from './types.js';
import type { UserState } from './user-state.js';
import { isPermanent, type WriteCounters, type WriteHooks, WriteQueue } from './write-queue.js';
import { AdapterWriter, ListenerWriter } from './writers.js';

export type { UserState } from './user-state.js';

/** What the pipeline tells its owner; the manager turns these into events and log lines. */
export type PipelineHooks<Owner> = Omit<WriteHooks<Owner>, 'settled'>;

export interface PipelineStats extends WriteCounters {
  /** Users whose write is running now. */
  inFlight: number;
  /** Users waiting for a batch. */
  queued: number;
  /** Users waiting for an automatic retry after a failed write. */
  retrying: number;
  /** Destroyed sessions whose data is not stored yet (held for retry, or reported at shutdown). */
  orphaned: number;
  /**
   * Duration of the last interval flush or `persistAllUserData()`, in ms; `null` until the first one finishes
   * (always present, so it survives `JSON.stringify`).
   */
  lastFlushMs: number | null;
}

/**
 * Gets user data into the store. Holds the users (bound to sessions, or kept after them until stored), and
 * composes the parts that each own a piece of a user's state: the `DirtyTracker` (what changed), the
 * `WriteQueue` (single flight, batches, retries, versions) with its writer (an adapter, or the listeners), and
 * flush and drain, which decide when to write. Control flows one way: the manager calls in, results come back
 * as return values and hooks.
 */
export class PersistencePipeline<Owner> {
  /** Held while a caller awaits a write or a drain, so the process does not exit under it. */
  readonly keepAlive = new KeepAlive();
  readonly #users = new Map<string, UserState<Owner>>();
  /** Callers of `whenSettled`, by user key. */
  readonly #settleWaiters = new Map<string, Set<() => void>>();
  readonly #dirty: DirtyTracker<Owner>;
  readonly #queue: WriteQueue<Owner>;
  readonly #options: ResolvedPersistenceOptions;
  readonly #source: object;
  #lastFlushMs: number | null = null;
  #closed = false;

  /**
   * `source` names the pipeline in what it publishes for instrumentation (the manager; see `channels.ts`).
   */
  constructor(
    adapter: PersistenceAdapter | undefined,
    options: ResolvedPersistenceOptions,
    hooks: PipelineHooks<Owner>,
    source: object,
  ) {
    this.#source = source;
    this.#options = options;
    this.#dirty = new DirtyTracker(options.dirtyTracking);
    const writer =
      adapter === undefined ? new ListenerWriter() : new AdapterWriter(adapter, options.callTimeout, source);
    this.#queue = new WriteQueue(writer, this.#dirty, options, source, {
      ...hooks,
      persisted: (state) => {
        // The users map stays in order of last write, so a flush finds the least recently persisted first
        // without sorting every user.
        if (this.#users.get(state.key) === state) {
          this.#users.delete(state.key);
          this.#users.set(state.key, state);
        }
        hooks.persisted(state);
      },
      settled: (state) => {
        this.#forgetIfSettled(state);
        this.#notifySettled(state.key);
      },
    });
  }

  /** Whether the user's data is held (bound to a live session, or a destroyed session's not yet stored). */
  holds(key: string): boolean {
    const state = this.#users.get(key);
    return state !== undefined && !state.dropped;
  }

  /** The users held: bound to live sessions, and destroyed sessions' data not yet stored. */
  users(): IterableIterator<UserState<Owner>> {
    return this.#users.values();
  }

  /**
   * Binds a user's data to `owner`. `stored` data was just loaded from the store (nothing to write yet); other
   * data is written at the next occasion. `version` fences the next write (undefined: unconditional).
   */
  bind(
    owner: Owner,
    userId: UserId,
    key: string,
    userData: object,
    { version, stored }: { version: number | undefined; stored: boolean },
  ): UserState<Owner> {
    let state = this.#users.get(key);
    if (state === undefined) {
      state = {
        key,
        userId,
        owner,
        orphan: false,
        dropped: false,
        userData,
        generation: 0,
        dirty: this.#dirty.newState(),
        write: this.#queue.newState(version),
      };
      this.#users.set(key, state);
    } else {
      // Unsaved data of an earlier session of this user: the same state keeps its write in flight and the new
      // data's writes in order (single flight), but the old write no longer updates the bookkeeping.
      state.owner = owner;
      state.orphan = false;
      state.userData = userData;
      state.generation++;
      this.#queue.rebase(state, version);
    }
    this.#dirty.bound(state, { stored });
    this.#notifySettled(key);
    return state;
  }

  /**
   * Takes over the unsaved data of a destroyed session of this user, if this process holds any: a player who
   * reconnects finds what they did last, at once, even while its final write is still running. Unless the
   * store has moved past it: the store is read (through `load`) and when another node has written the user
   * since this process last did (a newer version), the data is `stale`, dropped, and the caller binds the
   * store's data instead. Data that met a conflict is stale too. An unreachable store leaves the data adopted:
   * it is the newest this process has, and the version fence stops its writes if it is not the newest.
   */
  async adoptOrphan(
    owner: Owner,
    key: string,
    load: (() => Promise<StoredUser | undefined>) | undefined,
  ): Promise<
    | { kind: 'none' }
    | { kind: 'adopted'; state: UserState<Owner> }
    | { kind: 'stale'; loaded: boolean; stored: StoredUser | undefined }
  > {
    const state = this.#users.get(key);
    if (state === undefined || !state.orphan) return { kind: 'none' };
    if (state.write.conflict !== undefined) {
      this.#drop(state);
      return { kind: 'stale', loaded: false, stored: undefined };
    }
    // Claimed, so that nothing forgets it while the store is read.
    state.owner = owner;
    state.orphan = false;
    this.#notifySettled(key);
    const adopted = { kind: 'adopted', state } as const;
    if (load === undefined || state.write.version === undefined) return adopted;
    let stored: StoredUser | undefined;
    try {
      stored = await load();
    } catch {
      return adopted;
    }
    if (stored === undefined || stored.version <= state.write.version) return adopted;
    // One version ahead while this process's write is running: that version may be this write. Wait for it.
    if (state.write.inFlight && stored.version === state.write.version + 1) {
      await this.#queue.request(state).catch(() => {});
      if (state.write.conflict === undefined && stored.version <= (state.write.version ?? 0)) return adopted;
    }
    this.#drop(state);
    return { kind: 'stale', loaded: true, stored };
  }

  /**
   * Resolves once this process holds nothing more to write for the user: no data held, data bound to a live
   * session again (a reconnect took it over), or a destroyed session's data that retrying cannot store (a
   * conflict, a permanent error). Another node may then take the user over.
   */
  whenSettled(key: string): Promise<void> {
    if (this.#isSettled(key)) return Promise.resolve();
    return new Promise((resolve) => {
      const waiters = this.#settleWaiters.get(key) ?? new Set();
      this.#settleWaiters.set(key, waiters);
      waiters.add(resolve);
    });
  }

  #isSettled(key: string): boolean {
    const state = this.#users.get(key);
    return state === undefined || !state.orphan || state.dropped || this.#queue.isStuck(state);
  }

  #notifySettled(key: string): void {
    const waiters = this.#settleWaiters.get(key);
    if (waiters === undefined || !this.#isSettled(key)) return;
    this.#settleWaiters.delete(key);
    for (const resolve of waiters) resolve();
  }

  /** Replaces the user's data with the store's (after a conflict): writing resumes from `version`. */
  rebase(
    state: UserState<Owner>,
    userData: object,
    { version, stored }: { version: number; stored: boolean },
  ): void {
    state.userData = userData;
    state.generation++;
    this.#queue.rebase(state, version);
    this.#dirty.bound(state, { stored });
  }

  /** The game says the user's data changed (needed in explicit dirty tracking). */
  markDirty(state: UserState<Owner>): void {
    this.#dirty.mark(state);
  }

  /**
   * Writes the user's current data now (if it changed); resolves when it is stored. The process stays alive
   * until it settles.
   */
  persist(state: UserState<Owner>): Promise<void> {
    this.#dirty.refresh(state);
    if (this.#dirty.mode === 'explicit') this.#dirty.mark(state);
    return this.keepAlive.during(this.#queue.request(state));
  }

  /**
   * The session is going away. With `keep: 'unsaved'`, data that is not yet stored stays held as an orphan:
   * queued for retry until it is written, or (after a conflict) kept so that shutdown reports it. With
   * `keep: 'nothing'` the user is forgotten.
   */
  release(state: UserState<Owner>, keep: 'unsaved' | 'nothing'): void {
    state.orphan = true;
    if (keep === 'nothing' || this.#closed) this.#drop(state);
    else this.#forgetIfSettled(state);
  }

  /** Whether the user's data differs from what the store holds (snapshot mode: O(size of the data)). */
  isDirty(state: UserState<Owner>): boolean {
    return this.#dirty.isDirty(state);
  }

  /**
   * Writes every user whose data changed, least recently persisted first, and resolves with the users that
   * could not be saved. An `explicit` flush (a caller awaits it) also retries users waiting for their backoff
   * and reports users held back by a conflict; an `interval` flush leaves both alone. The scan yields to the
   * event loop every few milliseconds, and sends each batch as soon as it has found it.
   */
  flush(reason: 'explicit' | 'interval'): Promise<UnsavedUser[]> {
    return traced(
      flushChannel,
      (): FlushMessage => ({ manager: this.#source, reason }),
      async (message) => {
        const unsaved = await this.#flush(reason);
        if (message !== undefined) message.unsaved = unsaved.length;
        return unsaved;
      },
    );
  }

  async #flush(reason: 'explicit' | 'interval'): Promise<UnsavedUser[]> {
    const explicit = reason === 'explicit';
    const started = performance.now();
    const unsaved: UnsavedUser[] = [];
    const writes: Promise<void>[] = [];
    const write = (state: UserState<Owner>) =>
      writes.push(
        this.#queue.request(state).catch((error: Error) => {
          unsaved.push(this.#queue.unsaved(state, error));
        }),
      );
    const batchSize = this.#options.batchSize;
    let found: UserState<Owner>[] = [];
    const pace = new Pacer();
    for (const state of this.#candidates(explicit)) {
      if (pace.due()) await pace.yield();
      if (state === undefined) continue;
      const pending = state.write;
      if (state.dropped) continue;
      if (pending.conflict !== undefined) {
        if (explicit) unsaved.push(this.#queue.unsaved(state, pending.conflict));
        continue;
      }
      if (pending.retryTimer !== undefined && !explicit) continue;
      if (pending.inFlight || pending.queued) {
        write(state);
        continue;
      }
      let snapshot: ReturnType<DirtyTracker<Owner>['snapshot']>;
      try {
        snapshot = this.#dirty.snapshot(state);
      } catch (error) {
        this.#queue.refuse(state, error as Error);
        unsaved.push(this.#queue.unsaved(state, error as Error));
        continue;
      }
      if (snapshot.digest === state.dirty.savedDigest) {
        this.#dirty.saved(state, snapshot);
        this.#forgetIfSettled(state);
        continue;
      }
      this.#dirty.keep(state, snapshot);
      found.push(state);
      if (found.length === batchSize) {
        for (const user of found) write(user);
        found = [];
        await nextMacrotask(); // lets the batch go out now
      }
    }
    for (const user of found) write(user);
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

  /** Stops everything: timers cleared, held users dropped, callers still waiting rejected. */
  close(): void {
    this.#closed = true;
    this.#queue.close(this.#users.values());
    for (const state of [...this.#users.values()]) this.#drop(state);
  }

  stats(): PipelineStats {
    let orphaned = 0;
    for (const state of this.#users.values()) if (state.orphan) orphaned++;
    return {
      ...this.#queue.stats(this.#users.values()),
      orphaned,
      ...this.#queue.counters,
      lastFlushMs: this.#lastFlushMs,
    };
  }

  async #drain(timeoutMs: number): Promise<UnsavedUser[]> {
    const deadline = performance.now() + timeoutMs;
    let attempt = 0;
    for (;;) {
      await nextMacrotask();
      const open = await this.#unsettled();
      if (open.length === 0) return [];
      if (open.every((state) => this.#queue.isStuck(state)))
        return open.map((state) => this.#queue.unsaved(state));
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      const unsaved = await withTimeout(this.flush('explicit'), remaining);
      if (unsaved !== undefined && unsaved.length === 0) continue;
      if (unsaved?.every((user) => isPermanent(user.error))) continue;
      const pause = Math.min(this.#queue.backoff(++attempt), deadline - performance.now());
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause).unref());
    }
    return (await this.#unsettled()).map((state) => this.#queue.unsaved(state));
  }

  /**
   * The users a flush looks at, least recently persisted first, as a lazy sequence so that the flush's
   * pacing covers the selection too. In explicit dirty tracking an interval flush looks only at the marked
   * users, so it costs what the changed users cost; an explicit flush also at users with a failure or a write
   * pending. Otherwise every user: those never written first, then the rest in the order of the users map,
   * which is kept in order of last write (no sort of every user). Yields `undefined` for users it passes over,
   * so that the caller can pace long stretches of skipping too.
   */
  *#candidates(explicit: boolean): Generator<UserState<Owner> | undefined> {
    const marked = this.#dirty.marked();
    if (this.#dirty.mode === 'explicit' && !explicit) {
      yield* [...marked].sort((a, b) => a.write.lastPersistedAt - b.write.lastPersistedAt);
      return;
    }
    const users = [...this.#users.values()];
    const wanted = (state: UserState<Owner>) =>
      this.#dirty.mode === 'snapshot' || marked.has(state) || !this.#queue.isIdle(state);
    for (const neverWritten of [true, false]) {
      for (const state of users) {
        yield (state.write.lastPersistedAt === 0) === neverWritten && wanted(state) ? state : undefined;
      }
    }
  }

  /** Users whose data is not known to be stored; yields to the event loop on a long list. */
  async #unsettled(): Promise<UserState<Owner>[]> {
    const open: UserState<Owner>[] = [];
    const pace = new Pacer();
    for (const state of [...this.#users.values()]) {
      if (pace.due()) await pace.yield();
      if (state.dropped) continue;
      if (!this.#queue.isIdle(state) || state.write.conflict !== undefined || this.#dirty.isDirty(state))
        open.push(state);
    }
    return open;
  }

  /** A destroyed session's data that is stored and has nothing pending is forgotten. */
  #forgetIfSettled(state: UserState<Owner>): void {
    if (state.orphan && !state.dropped && this.#queue.isIdle(state) && !this.#dirty.isDirty(state))
      this.#drop(state);
  }

  #drop(state: UserState<Owner>): void {
    state.dropped = true;
    this.#queue.forget(state);
    this.#dirty.forget(state);
    if (this.#users.get(state.key) === state) this.#users.delete(state.key);
    this.#notifySettled(state.key);
  }
}

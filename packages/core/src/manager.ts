import { randomBytes } from 'node:crypto';
import { publish, shutdownChannel } from './channels.js';
import { callAdapter, Pacer, withTimeout } from './deadline.js';
import {
  ConflictError,
  describeUserId,
  PersistenceError,
  StateError,
  type UnsavedUser,
  ValidationError,
} from './errors.js';
import { AsyncEventEmitter } from './events.js';
import {
  checkKeys,
  checkManagerOptions,
  completeLogger,
  type Logger,
  type ResolvedPersistenceOptions,
  resolvePersistenceOptions,
  resolvePresenceOptions,
  type SessionManagerOptions,
} from './options.js';
import { PersistencePipeline, type PipelineHooks, type PipelineStats, type UserState } from './pipeline.js';
import { type KickInfo, PresenceCoordinator } from './presence.js';
import { markKicked, Session, type SessionHost } from './session.js';
import type { PersistenceAdapter, StoredUser, UserData, UserId } from './types.js';
import { userKey } from './user-data.js';

/** Events the manager emits: every session event, with the session first. */
export interface SessionManagerEvents<T extends object = UserData> {
  created: [session: Session<T>];
  started: [session: Session<T>];
  identified: [session: Session<T>, userId: UserId, userData: T];
  beforeDestroy: [session: Session<T>];
  destroy: [session: Session<T>];
  persistUserData: [session: Session<T>];
  persisted: [session: Session<T>, version: number | undefined];
  persistError: [session: Session<T>, error: Error];
  conflict: [session: Session<T>, error: ConflictError];
  /** The user logged in on another node (or in another session here), or this node lost its lease. */
  kicked: [session: Session<T>, info: KickInfo];
}

export interface SessionManagerStats extends PipelineStats {
  /** Live sessions. */
  sessions: number;
  /** Live sessions with a user. */
  identified: number;
  /** Users whose data differs from what is stored, including destroyed sessions' unsaved data (O(total data size)). */
  dirty: number;
  /** Interval ticks skipped because the previous flush was still running. */
  skippedTicks: number;
}

/**
 * Creates sessions and gets their user data into the store: on an interval, when sessions are destroyed,
 * on demand (`persistNow`, `persistAllUserData`), and at shutdown (`destroy`).
 */
export class SessionManager<T extends object = UserData> extends AsyncEventEmitter<SessionManagerEvents<T>> {
  readonly adapter: PersistenceAdapter | undefined;
  /** This node's id in the presence; undefined without a presence. */
  readonly nodeId: string | undefined;
  readonly #presence: PresenceCoordinator | undefined;
  readonly #log: Required<Logger>;
  readonly #options: ResolvedPersistenceOptions;
  readonly #pipeline: PersistencePipeline<Session<T>>;
  readonly #host: SessionHost<T>;
  readonly #sessions = new Set<Session<T>>();
  readonly #byKey = new Map<string, Session<T>>();
  readonly #byUser = new Map<string, Session<T>>();
  #timer: NodeJS.Timeout | undefined;
  #flushing = false;
  #skippedTicks = 0;
  #destroying: Promise<void> | undefined;

  constructor(options: SessionManagerOptions = {}) {
    super();
    checkManagerOptions(options);
    this.adapter = options.adapter;
    this.#log = completeLogger(options.log);
    this.#options = resolvePersistenceOptions(options.userData?.persistence, options.adapter);
    this.#pipeline = new PersistencePipeline(options.adapter, this.#options, this.#pipelineHooks(), this);
    this.#host = this.#sessionHost();
    const presence = resolvePresenceOptions(options);
    this.nodeId = presence?.nodeId;
    this.#presence =
      presence &&
      new PresenceCoordinator(presence, {
        manager: this,
        log: this.#log,
        callTimeout: this.#options.callTimeout,
        evict: (key, info) => this.#evict(key, info),
        whenSettled: (key) => this.#pipeline.whenSettled(key),
        inUse: (key) => this.#byUser.has(key),
        holdsData: (key) => this.#pipeline.holds(key),
      });
    if (this.#options.interval !== undefined) {
      // unref: the timer alone never keeps the process alive.
      this.#timer = setInterval(() => this.#tick(), this.#options.interval).unref();
    }
  }

  /** Creates a session, optionally under a unique `key` for `findByKey`. Emits `created`. */
  async create(key?: string): Promise<Session<T>> {
    this.#assertAlive('create');
    if (key !== undefined) {
      if (typeof key !== 'string' || key.length === 0) {
        throw new ValidationError(
          'INVALID_KEY',
          `Invalid session key ${String(key)}: expected a non-empty string.`,
        );
      }
      if (this.#byKey.has(key)) {
        throw new ValidationError(
          'DUPLICATE_KEY',
          `A live session already uses the key ${JSON.stringify(key)}.`,
        );
      }
    }
    const session = new Session<T>(this.#host, key);
    this.#sessions.add(session);
    if (key !== undefined) this.#byKey.set(key, session);
    try {
      await this.emitAsync('created', session);
    } catch (error) {
      // Nobody holds the session yet, so a failed `created` listener leaves nothing behind.
      this.#host.forget(session);
      throw error;
    }
    return session;
  }

  /** The live session created with `key`, if any. */
  findByKey(key: string): Session<T> | undefined {
    return this.#byKey.get(key);
  }

  /** The live session identified as `userId`, if any. */
  findByUserId(userId: UserId): Session<T> | undefined {
    return this.#byUser.get(userKey(userId));
  }

  /**
   * The node that holds the user now (to route a message to them), or undefined when no node does. Without a
   * presence: this process's `nodeId` (undefined) answers for local sessions only, so it resolves undefined.
   */
  async locate(userId: UserId): Promise<string | undefined> {
    const key = userKey(userId);
    if (this.#presence === undefined) return undefined;
    if (this.#byUser.has(key)) return this.#presence.nodeId;
    return this.#presence.locate(key);
  }

  /** The live sessions. */
  sessions(): IterableIterator<Session<T>> {
    return this.#sessions.values();
  }

  /** Whether the persistence options list `eventName` (e.g. `'disconnect'`, `'shutdown'`). */
  willPersistUserDataOn(eventName: string): boolean {
    return this.#options.events.has(eventName);
  }

  /**
   * Persists every session whose user data changed, now. Rejects with a `PersistenceError` (PERSIST_FAILED)
   * whose `unsaved` lists exactly the users that could not be saved; those stay queued for retry.
   */
  async persistAllUserData(): Promise<void> {
    this.#assertAlive('persistAllUserData');
    const pipeline = this.#pipeline;
    const unsaved = await pipeline.keepAlive.during(pipeline.flush('explicit'));
    if (unsaved.length > 0) {
      throw new PersistenceError('PERSIST_FAILED', `${describeUnsaved(unsaved)} could not be saved.`, {
        unsaved,
      });
    }
  }

  stats(): SessionManagerStats {
    let dirty = 0;
    for (const state of this.#pipeline.users()) if (this.#pipeline.isDirty(state)) dirty++;
    const { inFlight, queued, retrying, orphaned, written, failed, conflicts, lastFlushMs } =
      this.#pipeline.stats();
    return {
      sessions: this.#sessions.size,
      identified: this.#byUser.size,
      dirty,
      inFlight,
      queued,
      retrying,
      orphaned,
      written,
      failed,
      conflicts,
      lastFlushMs,
      skippedTicks: this.#skippedTicks,
    };
  }

  /**
   * Shuts down: stops the interval, destroys every session (persisting when `persist` is true, by default when
   * the persistence events include `'shutdown'`), then keeps retrying unsaved data until
   * `shutdownTimeout`. Rejects with a `PersistenceError` SHUTDOWN_INCOMPLETE whose `unsaved` lists exactly the
   * users that were not saved. The adapter is not closed: it belongs to the caller.
   */
  destroy(persist: boolean = this.willPersistUserDataOn('shutdown')): Promise<void> {
    this.#destroying ??= this.#destroy(persist);
    return this.#destroying;
  }

  async #destroy(persist: boolean): Promise<void> {
    clearInterval(this.#timer);
    const started = performance.now();
    const deadline = started + this.#options.shutdownTimeout;
    const destroying: Promise<void>[] = [];
    const pace = new Pacer();
    for (const session of [...this.#sessions]) {
      if (pace.due()) await pace.yield();
      destroying.push(session.destroy(persist));
    }
    const destroyed = Promise.allSettled(destroying);
    const outcomes = await this.#pipeline.keepAlive.during(
      withTimeout(destroyed, deadline - performance.now()),
    );
    let unsaved: UnsavedUser[] = [];
    if (persist) {
      unsaved = await this.#pipeline.drain(Math.max(0, deadline - performance.now()));
    } else {
      const dropped = [...this.#pipeline.users()].filter((state) => state.orphan);
      if (dropped.length > 0) {
        this.#log.warn(
          { userIds: dropped.map((state) => state.userId) },
          'cagey-sessions: destroyed without persisting; unsaved data of earlier sessions is dropped',
        );
      }
    }
    this.#pipeline.close();
    await this.#presence?.close();
    publish(shutdownChannel, () => ({
      manager: this,
      durationMs: performance.now() - started,
      unsaved: unsaved.length,
      maybeStored: unsaved.filter((user) => user.maybeStored).length,
    }));
    if (unsaved.length > 0) {
      const error = new PersistenceError(
        'SHUTDOWN_INCOMPLETE',
        `Shutdown finished with ${describeUnsaved(unsaved)} not saved.`,
        { unsaved },
      );
      this.#log.error(
        {
          userIds: unsaved.map((u) => u.userId),
          maybeStored: unsaved.filter((u) => u.maybeStored).map((u) => u.userId),
          err: error,
        },
        'cagey-sessions: users not saved at shutdown',
      );
      throw error;
    }
    const listenerError = outcomes?.find((outcome) => outcome.status === 'rejected');
    if (listenerError !== undefined) throw (listenerError as PromiseRejectedResult).reason;
  }

  #tick(): void {
    // Ticks that fall during a long flush are skipped, not queued: the running flush already covers them.
    if (this.#flushing) {
      this.#skippedTicks++;
      return;
    }
    this.#flushing = true;
    this.#pipeline
      .flush('interval')
      .catch((error) => this.#log.error({ err: error }, 'cagey-sessions: interval flush failed'))
      .finally(() => {
        this.#flushing = false;
      });
  }

  #assertAlive(call: string): void {
    if (this.#destroying !== undefined) {
      throw new StateError('MANAGER_DESTROYED', `Cannot call ${call}() on a destroyed session manager.`);
    }
  }

  #sessionHost(): SessionHost<T> {
    const adapter = this.adapter;
    return {
      adapter,
      load:
        adapter === undefined
          ? undefined
          : async (userId) => {
              const stored = await callAdapter(adapter.name, 'load', this.#options.callTimeout, () =>
                adapter.load(userId),
              );
              return checkLoaded(adapter, stored);
            },
      pipeline: this.#pipeline,
      log: this.#log,
      emitForSession: (event, session, args) =>
        this.emitAsync(event as keyof SessionManagerEvents<T>, session, ...args),
      acquireUser: async (session, key) => {
        const presence = this.#presence;
        if (presence === undefined) return undefined;
        const holder = this.#byUser.get(key);
        // One live session per user: a second login on this node ends the first, as one on another node would.
        if (holder !== undefined && holder !== session) {
          await this.#kick(holder, { reason: 'login-elsewhere', nodeId: presence.nodeId });
        }
        return presence.acquire(key);
      },
      fencedLoad: adapter === undefined ? undefined : (userId) => this.#fencedLoad(adapter, userId),
      kick: (session, info) => this.#kick(session, info),
      claimUser: (session, key) => {
        const holder = this.#byUser.get(key);
        if (holder !== undefined && holder !== session) {
          throw new StateError(
            'USER_IN_SESSION',
            `User ${describeUserId(key)} is already in another live session; destroy that one first (manager.findByUserId()).`,
          );
        }
        this.#byUser.set(key, session);
      },
      releaseUser: (session, key) => {
        if (this.#byUser.get(key) === session) this.#byUser.delete(key);
        this.#presence?.releaseWhenSettled(key);
      },
      forget: (session) => {
        this.#sessions.delete(session);
        if (session.key !== undefined && this.#byKey.get(session.key) === session)
          this.#byKey.delete(session.key);
      },
      willPersistUserDataOn: (eventName) => this.willPersistUserDataOn(eventName),
      manager: this,
    };
  }

  /** Emits `kicked` on the session and the manager (listeners close the connection), then destroys it. */
  async #kick(session: Session<T>, info: KickInfo): Promise<void> {
    if (!session.isDestroyed) {
      markKicked(session);
      this.#log.info({ userId: session.userId, ...info }, 'cagey-sessions: session kicked');
      const emitted = [this.emitAsync('kicked', session, info), session.emitAsync('kicked', info)];
      for (const outcome of await Promise.allSettled(emitted)) {
        if (outcome.status === 'rejected') {
          this.#log.error({ err: outcome.reason, event: 'kicked' }, 'cagey-sessions: event listener failed');
        }
      }
    }
    await session
      .destroy(true)
      .catch((error) =>
        this.#log.error({ err: error, event: 'destroy' }, 'cagey-sessions: event listener failed'),
      );
  }

  /** Presence handoff: ends this node's session of the user and waits until its newest data is stored. */
  async #evict(key: string, info: KickInfo): Promise<void> {
    const session = this.#byUser.get(key);
    if (session !== undefined) await this.#kick(session, info);
    await this.#pipeline.whenSettled(key);
  }

  /**
   * Loads a user taken over from a node whose lease expired, and fences that node off: the data is written
   * back unchanged, so the version moves on and any write the old node still sends (based on the version it
   * had) is refused as a conflict. A write of the old node that landed first is read again and kept.
   */
  async #fencedLoad(adapter: PersistenceAdapter, userId: UserId): Promise<StoredUser | undefined> {
    const load = this.#host.load!;
    for (let attempt = 1; ; attempt++) {
      const stored = await load(userId);
      if (stored === undefined) return undefined;
      const record = {
        userId,
        userData: stored.userData,
        expectedVersion: stored.version,
        writeId: `fence.${randomBytes(9).toString('base64url')}`,
      };
      const results = await callAdapter(adapter.name, 'save', this.#options.callTimeout, () =>
        adapter.save([record]),
      );
      const result = Array.isArray(results) ? results[0] : undefined;
      if (result?.status === 'ok' && Number.isSafeInteger(result.version)) {
        return { userData: stored.userData, version: result.version };
      }
      if (result?.status === 'conflict') {
        if (attempt < 5) continue;
        throw new ConflictError(userId, stored.version, result.currentVersion);
      }
      if (result?.status === 'error') throw result.error;
      throw new PersistenceError(
        'ADAPTER_CONTRACT',
        `Adapter "${adapter.name}" broke the PersistenceAdapter contract: save() did not resolve one result per record.`,
      );
    }
  }

  #pipelineHooks(): PipelineHooks<Session<T>> {
    const notify = (
      event: 'persisted' | 'persistError' | 'conflict',
      state: UserState<Session<T>>,
      arg: unknown,
    ) => {
      const session = state.owner;
      for (const emitted of [this.emitAsync(event, session, arg), session.emitAsync(event, arg)]) {
        emitted?.catch((error) =>
          this.#log.error({ err: error, event }, 'cagey-sessions: event listener failed'),
        );
      }
    };
    return {
      beforePersist: (state) => {
        const session = state.owner;
        const onManager = this.emitAsync('persistUserData', session);
        const onSession = session.emitAsync('persistUserData');
        if (onManager === undefined) return onSession;
        if (onSession === undefined) return onManager;
        return Promise.allSettled([onManager, onSession]).then(([a, b]) => {
          if (a.status === 'rejected') throw a.reason;
          if (b.status === 'rejected') throw b.reason;
        });
      },
      persisted: (state) => notify('persisted', state, state.write.version),
      failed: (state, error) => {
        this.#log.warn(
          { userId: state.userId, failures: state.write.failures, err: error },
          'cagey-sessions: could not save user data; it stays queued for retry',
        );
        notify('persistError', state, error);
      },
      conflicted: (state, error) => {
        this.#log.warn(
          {
            userId: state.userId,
            expectedVersion: error.expectedVersion,
            currentVersion: error.currentVersion,
          },
          'cagey-sessions: the store holds newer data for this user; not overwriting it',
        );
        notify('conflict', state, error);
      },
    };
  }
}

/** The original factory: `create({ log, adapter }, { userData: { persistence } })`. */
export function create<T extends object = UserData>(
  apis: { log?: Logger | undefined; adapter?: PersistenceAdapter | undefined } = {},
  options: Omit<SessionManagerOptions, 'log' | 'adapter'> = {},
): SessionManager<T> {
  checkKeys('apis', apis, ['log', 'adapter']);
  checkKeys('options', options, ['userData', 'presence', 'nodeId', 'leaseTtl', 'handoffTimeout']);
  return new SessionManager<T>({ ...options, log: apis.log, adapter: apis.adapter });
}

/** What `load` resolved, checked against the contract: nothing, or `{ userData: object, version: n >= 1 }`. */
function checkLoaded(adapter: PersistenceAdapter, stored: unknown): StoredUser | undefined {
  if (stored === undefined || stored === null) return undefined;
  const { userData, version } = stored as Partial<StoredUser>;
  if (
    typeof userData === 'object' &&
    userData !== null &&
    !Array.isArray(userData) &&
    typeof version === 'number' &&
    Number.isSafeInteger(version) &&
    version >= 1
  ) {
    return { userData, version };
  }
  throw new PersistenceError(
    'ADAPTER_CONTRACT',
    `Adapter "${adapter.name}" broke the PersistenceAdapter contract: load() resolved something other than ` +
      'undefined or { userData: object, version: positive integer }.',
  );
}

function describeUnsaved(unsaved: UnsavedUser[]): string {
  const ids = unsaved.slice(0, 10).map((u) => describeUserId(u.userId));
  const more = unsaved.length > 10 ? ` and ${unsaved.length - 10} more` : '';
  const maybe = unsaved.filter((u) => u.maybeStored).length;
  const unknown =
    maybe === 0 ? '' : `; for ${maybe} of them a write may have reached the store (maybeStored)`;
  return `${unsaved.length} user${unsaved.length === 1 ? '' : 's'} (${ids.join(', ')}${more}${unknown})`;
}

import { type PersistMessage, persistChannel, traced } from './channels.js';
import { type ConflictError, describeUserId, StateError } from './errors.js';
import { AsyncEventEmitter } from './events.js';
import type { Logger } from './options.js';
import type { PersistencePipeline, UserState } from './pipeline.js';
import type { Acquired, KickInfo } from './presence.js';
import type { PersistenceAdapter, StoredUser, UserData, UserId } from './types.js';
import { checkExpectedVersion, checkUserData, userKey } from './user-data.js';

/** Sessions being kicked: their destroy persists the data whatever its caller says (the next node needs it). */
const kicked = new WeakSet<object>();

/** Marks the session as kicked (see `kicked`); called by the manager before it emits `kicked`. */
export function markKicked(session: object): void {
  kicked.add(session);
}

/** Events a session emits; the manager emits the same ones with the session first. */
export interface SessionEvents<T extends object = UserData> {
  started: [];
  identified: [userId: UserId, userData: T];
  beforeDestroy: [];
  destroy: [];
  /** It is time to persist this session's user data (before the adapter writes it). */
  persistUserData: [];
  /** The user data was written; `version` is the stored version (undefined without an adapter). */
  persisted: [version: number | undefined];
  /** A write failed; it is retried with backoff. */
  persistError: [error: Error];
  /** The store holds newer data written elsewhere; this session is not written again until `reload()`. */
  conflict: [error: ConflictError];
  /**
   * With a presence: the user logged in elsewhere (`info.nodeId`, this node's id for another session here), or
   * this node lost its lease. Close the connection. The session is then destroyed with its data persisted,
   * whatever the persistence events say, so the next node gets the newest data.
   */
  kicked: [info: KickInfo];
}

export interface SetUserOptions {
  /**
   * The stored version `userData` was read at. Writes are then fenced: if another writer changed the user in
   * the meantime, the write is a conflict instead of an overwrite. `0` means the user is new. Omit for
   * unconditional (last writer wins) writes.
   */
  version?: number;
}

export interface IdentifyOptions<T extends object> {
  /** Data for a user the store does not know yet; deep-copied, never shared between sessions. */
  defaults?: T;
}

/**
 * What `identify()` resolves with. A manager given a user-data type (`create<Player>()`) gives `Player`, and
 * `defaults` must then be a `Player`. A manager without one (its type is the default `UserData`) gives the
 * type of `defaults`: `identify(id, { defaults: { gold: 0 } })` resolves with `{ gold: number }`, or with the
 * type argument of `identify<Player>(...)`.
 */
export type IdentifiedUserData<T extends object, D extends object> = IsUntyped<T> extends true ? D : T;

/** Whether `T` is the default `UserData` (no user-data type was given), as opposed to a type of the game's. */
type IsUntyped<T> = [T] extends [UserData] ? ([UserData] extends [T] ? true : false) : false;

/** What a session needs from its manager. */
export interface SessionHost<T extends object> {
  /** The manager, as instrumentation messages name it. */
  readonly manager: object;
  readonly adapter: PersistenceAdapter | undefined;
  /** The adapter's `load`, bounded by `callTimeout` and checked against the contract. */
  readonly load: ((userId: UserId) => Promise<StoredUser | undefined>) | undefined;
  /** The part of the pipeline a session drives. */
  readonly pipeline: Pick<
    PersistencePipeline<Session<T>>,
    'bind' | 'adoptOrphan' | 'rebase' | 'persist' | 'release' | 'isDirty' | 'markDirty'
  >;
  readonly log: Required<Logger>;
  emitForSession(event: string, session: Session<T>, args: unknown[]): Promise<void> | undefined;
  /**
   * With a presence: ends another live session of the user here, then claims the user across nodes (waiting
   * for the node holding it to store and release it). Without one: resolves undefined at once.
   */
  acquireUser(session: Session<T>, key: string): Promise<Acquired | undefined>;
  /** `load`, and then a write of the same data so that the previous holder's late writes are refused. */
  readonly fencedLoad: ((userId: UserId) => Promise<StoredUser | undefined>) | undefined;
  /** Emits `kicked` and destroys the session with its data persisted. */
  kick(session: Session<T>, info: KickInfo): Promise<void>;
  claimUser(session: Session<T>, key: string): void;
  /** The session no longer has the user (or failed to get it): frees it here, and in the presence once stored. */
  releaseUser(session: Session<T>, key: string): void;
  forget(session: Session<T>): void;
  willPersistUserDataOn(eventName: string): boolean;
}

/**
 * One human interacting with the game: a place for per-connection values (`set`/`get`), and, once identified,
 * the player's `userData`, which game code mutates in place and the manager persists.
 */
export class Session<T extends object = UserData> extends AsyncEventEmitter<SessionEvents<T>> {
  /** The key given to `manager.create(key)`, if any. */
  readonly key: string | undefined;
  readonly #host: SessionHost<T>;
  #state: UserState<Session<T>> | undefined;
  #values: Map<string, unknown> | undefined;
  /** The `identify()` under way, by user key: a repeated login of the same user gets the same result. */
  #identified: { key: string; done: Promise<T> } | undefined;
  #destroying: Promise<void> | undefined;

  /** @internal Sessions are created by `SessionManager.create()`. */
  constructor(host: SessionHost<T>, key: string | undefined) {
    super();
    this.#host = host;
    this.key = key;
  }

  /** The identified user's id, undefined until `setUser` or `identify`. */
  get userId(): UserId | undefined {
    return this.#state?.userId;
  }

  /** The identified user's data. Mutate it in place; changes are detected and persisted. */
  get userData(): T | undefined {
    return this.#state?.userData as T | undefined;
  }

  /** The stored version the user data is based on (undefined for unconditional writes or before identification). */
  get version(): number | undefined {
    return this.#state?.write.version;
  }

  get isDestroyed(): boolean {
    return this.#destroying !== undefined;
  }

  /** Stores a per-session value (a client messenger, a logger, ...); it is never persisted. */
  set(key: string, value: unknown): void {
    this.#assertAlive('set');
    this.#values ??= new Map();
    this.#values.set(key, value);
  }

  get<V = unknown>(key: string): V | undefined {
    return this.#values?.get(key) as V | undefined;
  }

  /** Tells listeners the session can begin (emits `started`). */
  async start(): Promise<void> {
    this.#assertAlive('start');
    await this.#emit('started', []);
  }

  /**
   * Binds a user whose data the caller loaded itself. `userData` is adopted, not copied: keep mutating it.
   * Pass `options.version` to fence later writes by version. Emits `identified`.
   */
  async setUser(userId: UserId, userData: T, options: SetUserOptions = {}): Promise<void> {
    this.#assertAlive('setUser');
    const key = userKey(userId);
    checkUserData(userData);
    const version = checkExpectedVersion(options.version);
    this.#assertNoOtherUser(key);
    const acquired = await this.#host.acquireUser(this, key);
    try {
      try {
        this.#assertAlive('setUser');
        this.#assertNoOtherUser(key);
        this.#host.claimUser(this, key);
        this.#state = this.#host.pipeline.bind(this, userId, key, userData, { version, stored: false });
      } catch (error) {
        if (this.#state === undefined) this.#host.releaseUser(this, key);
        throw error;
      }
      await this.#emit('identified', [userId, userData]);
    } finally {
      // Only now may another node's login take the user: the caller gets the session before any kick.
      this.#bound(acquired, key);
    }
  }

  /**
   * Logs a player in: loads their stored data through the adapter (or starts from a copy of `defaults` for a
   * new player), binds it like `setUser` and keeps its version, so this session's writes are fenced by it.
   * Unsaved data of an earlier session of the same user in this process is taken over instead, once it is
   * written and unless the store has moved past it (another node wrote the user meanwhile). Emits `identified`; resolves with the user data. Identifying the same user again on
   * this session (a login sent twice) changes nothing and resolves with the same data.
   *
   * Typed by the manager's user-data type (`create<Player>()`: resolves with a `Player`, and `defaults` must be
   * one); without one, by `defaults` (`{ defaults: { gold: 0 } }` resolves with `{ gold: number }`) or by a type
   * argument (`identify<Player>(id)`). See `IdentifiedUserData`.
   */
  identify<D extends object = T>(
    userId: UserId,
    options: IdentifyOptions<IdentifiedUserData<T, D>> = {},
  ): Promise<IdentifiedUserData<T, D>> {
    return this.#identifyOnce(userId, options as IdentifyOptions<T>) as Promise<IdentifiedUserData<T, D>>;
  }

  #identifyOnce(userId: UserId, options: IdentifyOptions<T>): Promise<T> {
    this.#assertAlive('identify');
    const key = userKey(userId);
    if (this.#identified?.key === key) return this.#identified.done;
    if (this.#state?.key === key) return Promise.resolve(this.#state.userData as T);
    this.#assertNoOtherUser(key);
    const done = this.#identify(userId, key, options);
    this.#identified = { key, done };
    // Kept only while it runs: afterwards the bound user answers a repeated login.
    const settled = () => {
      if (this.#identified?.done === done) this.#identified = undefined;
    };
    done.then(settled, settled);
    return done;
  }

  async #identify(userId: UserId, key: string, options: IdentifyOptions<T>): Promise<T> {
    const { pipeline, fencedLoad } = this.#host;
    let load = this.#host.load;
    const acquired = await this.#host.acquireUser(this, key);
    try {
      this.#assertAlive('identify');
      this.#host.claimUser(this, key);
    } catch (error) {
      this.#bound(acquired, key);
      this.#host.releaseUser(this, key);
      throw error;
    }
    // Taken over from a node that stopped answering: its late writes must not land on top of this session's.
    if (acquired?.previousOwner !== undefined && fencedLoad !== undefined) load = fencedLoad;
    let state: UserState<Session<T>> | undefined;
    try {
      const held = await pipeline.adoptOrphan(this, key, load && (() => load(userId)));
      // Destroyed while taking the data over: it stays held for retry, as the destroy would have left it.
      if (held.kind === 'adopted' && this.#destroying !== undefined) pipeline.release(held.state, 'unsaved');
      this.#assertAlive('identify');
      state = held.kind === 'adopted' ? held.state : undefined;
      if (state === undefined) {
        if (load === undefined) {
          throw new StateError(
            'NO_ADAPTER',
            'identify() loads stored data through an adapter; none is configured. Use setUser() instead.',
          );
        }
        const stored = held.kind === 'stale' && held.loaded ? held.stored : await load(userId);
        this.#assertAlive('identify');
        if (stored !== undefined) {
          state = pipeline.bind(this, userId, key, stored.userData, {
            version: stored.version,
            stored: true,
          });
        } else {
          const fresh = structuredClone(options.defaults ?? {}) as T;
          checkUserData(fresh);
          state = pipeline.bind(this, userId, key, fresh, { version: 0, stored: false });
        }
      }
      this.#state = state;
    } catch (error) {
      if (this.#state === undefined) this.#host.releaseUser(this, key);
      this.#bound(acquired, key);
      throw error;
    }
    try {
      const userData = state.userData as T;
      await this.#emit('identified', [userId, userData]);
      return userData;
    } finally {
      // Only now may another node's login take the user: the caller gets the session before any kick.
      this.#bound(acquired, key);
    }
  }

  /**
   * Persists the user data now, e.g. after currency was spent; resolves once it is stored. Rejects with a
   * `PersistenceError` when the write fails (it is retried in the background), a `ConflictError` when the store
   * holds newer data, a `ValidationError` when the data cannot be stored. Resolves at once when nothing changed.
   */
  async persistNow(): Promise<void> {
    this.#assertAlive('persistNow');
    const state = this.#state;
    if (state === undefined) return;
    await traced(
      persistChannel,
      (): PersistMessage => ({ manager: this.#host.manager, userId: state.userId }),
      () => this.#host.pipeline.persist(state),
    );
  }

  /**
   * Whether the user data changed since it was last stored. Costs one serialisation of the data (in explicit
   * dirty tracking: whether it was marked since).
   */
  isDirty(): boolean {
    return this.#state !== undefined && this.#host.pipeline.isDirty(this.#state);
  }

  /**
   * Tells the manager the user data changed. Needed with `dirtyTracking: 'explicit'`, where only marked users
   * are written by flushes; harmless otherwise. Costs nothing but a counter.
   */
  markDirty(): void {
    if (this.#state !== undefined) this.#host.pipeline.markDirty(this.#state);
  }

  /**
   * Replaces the user data with the stored one (after a `conflict`, typically) and resumes writing. The old
   * `userData` object is abandoned: read `session.userData` again. Resolves with the new data.
   */
  async reload(): Promise<T> {
    this.#assertAlive('reload');
    const state = this.#state;
    const load = this.#host.load;
    if (state === undefined) throw new StateError('NOT_IDENTIFIED', 'reload() needs an identified session.');
    if (load === undefined)
      throw new StateError('NO_ADAPTER', 'reload() reads through an adapter; none is configured.');
    const stored = await load(state.userId);
    this.#assertAlive('reload');
    // A user deleted in the store is re-created from the data in memory.
    if (stored === undefined)
      this.#host.pipeline.rebase(state, state.userData, { version: 0, stored: false });
    else this.#host.pipeline.rebase(state, stored.userData, { version: stored.version, stored: true });
    return state.userData as T;
  }

  /**
   * Destroys the session: emits `beforeDestroy`, persists the user data when `persist` is true (default: when
   * the manager's persistence events include `'disconnect'`), then emits `destroy`. The user is free for a new
   * session as soon as the final write is asked for: a reconnect need not wait for it, and takes over data
   * still unsaved. A failed final write does not lose the data: it stays queued for retry, is reported
   * through `persistError` (or `conflict`), and shutdown reports it if it is still unsaved then. Calling it
   * again returns the same promise.
   */
  destroy(persist: boolean = this.#host.willPersistUserDataOn('disconnect')): Promise<void> {
    this.#destroying ??= this.#destroy(persist || kicked.has(this));
    return this.#destroying;
  }

  async #destroy(persist: boolean): Promise<void> {
    let listenerError: unknown;
    try {
      await this.#emit('beforeDestroy', []);
    } catch (error) {
      listenerError = error;
    }
    const state = this.#state;
    let written: Promise<void> | undefined;
    if (state !== undefined) {
      const { pipeline } = this.#host;
      written = persist ? pipeline.persist(state) : undefined;
      pipeline.release(state, persist ? 'unsaved' : 'nothing');
      this.#host.releaseUser(this, state.key);
    }
    this.#host.forget(this);
    // Failures are reported by the pipeline (events, log) and the data stays held for retry.
    await written?.catch(() => {});
    try {
      await this.#emit('destroy', []);
    } catch (error) {
      listenerError ??= error;
    }
    if (listenerError !== undefined) throw listenerError;
  }

  /** The claim is settled; if this node lost the user meanwhile (its lease lapsed), the session is kicked. */
  #bound(acquired: Acquired | undefined, key: string): void {
    if (acquired === undefined || acquired.bound() || this.#state?.key !== key) return;
    this.#host
      .kick(this, { reason: 'lease-lost', nodeId: undefined })
      .catch((error) => this.#host.log.error({ err: error }, 'cagey-sessions: kick failed'));
  }

  #emit(event: keyof SessionEvents<T> & string, args: unknown[]): Promise<void> | undefined {
    const onManager = this.#host.emitForSession(event, this, args);
    const onSession = this.emitAsync(event, ...args);
    if (onManager === undefined) return onSession;
    if (onSession === undefined) return onManager;
    return Promise.allSettled([onManager, onSession]).then(([a, b]) => {
      if (a.status === 'rejected') throw a.reason;
      if (b.status === 'rejected') throw b.reason;
    });
  }

  #assertAlive(call: string): void {
    if (this.#destroying !== undefined) {
      throw new StateError('SESSION_DESTROYED', `Cannot call ${call}() on a destroyed session.`);
    }
  }

  #assertNoOtherUser(key: string): void {
    if (this.#state !== undefined && this.#state.key !== key) {
      throw new StateError(
        'ALREADY_IDENTIFIED',
        `This session already belongs to user ${describeUserId(this.#state.userId)}; create a new session for another user.`,
      );
    }
  }
}

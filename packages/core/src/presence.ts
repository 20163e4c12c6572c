import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { type HandoffMessage, handoffChannel, publish } from './channels.js';
import { callAdapter, withTimeout } from './deadline.js';
import { describeUserId, PersistenceError, toError } from './errors.js';
import type { Logger, ResolvedPresenceOptions } from './options.js';
import type { ClaimResult, Presence, PresenceMessage } from './types.js';

/** Why a session was kicked, as its `kicked` event reports it. */
export interface KickInfo {
  /**
   * `'login-elsewhere'`: the user logged in on node `nodeId` (this node's own id for a second session here).
   * `'lease-lost'`: this node could not renew its lease in time (the presence was unreachable, the process
   * stalled); another node may take its users over, so it lets them all go.
   */
  reason: 'login-elsewhere' | 'lease-lost';
  /** The node the user went to; undefined for `'lease-lost'`. */
  nodeId: string | undefined;
}

/** What the coordinator needs from its manager. */
export interface PresenceHost {
  /** The manager, as instrumentation messages name it. */
  readonly manager: object;
  readonly log: Required<Logger>;
  readonly callTimeout: number;
  /**
   * Ends this node's live session of the user (emitting `kicked`) and resolves once the user's newest data is
   * stored, or cannot be (a conflict, a permanent error).
   */
  evict(key: string, info: KickInfo): Promise<void>;
  /** Resolves once this node holds nothing more to write for the user (see `PersistencePipeline.whenSettled`). */
  whenSettled(key: string): Promise<void>;
  /** Whether a live session on this node has the user. */
  inUse(key: string): boolean;
  /** Whether this process holds data of the user (a live session's, or a destroyed one's not yet stored). */
  holdsData(key: string): boolean;
}

/** A user claimed for this node; `bound()` must be called once the session has it (or gave up). */
export interface Acquired {
  /** A node whose lease expired held the user: its late writes must be fenced off before the data is used. */
  previousOwner: string | undefined;
  /** Ends the claim's binding; `false` when this node lost the user meanwhile (its lease lapsed). */
  bound(): boolean;
}

/** How often a waiting claim looks again when no `released` message comes (messages are best effort). */
const POLL_MS = 250;
/** How often a waiting claim asks the holder again. */
const ASK_AGAIN_MS = 1_000;
/** Users released in one presence call at shutdown. */
const RELEASE_CHUNK = 500;

/**
 * Drives the presence protocol for one manager, so that a user has at most one live session across every node
 * sharing the presence. Implementations of `Presence` only keep records and carry messages; this class decides:
 *
 * - Claims: `acquire(key)` claims the user; when another node holds it, asks that node to release it and waits
 *   for its `released` message (or looks again every `POLL_MS`), until `handoffTimeout`.
 * - Handoffs: a `release` request ends the local session (`kicked`), waits until its newest data is stored,
 *   then releases the user and answers `released`.
 * - The lease: renewed every third of `leaseTtl`. The local deadline counts from when a renewal was *sent*, so it
 *   always falls before the presence's own expiry: when it passes unrenewed, every user of this node is let go
 *   (`kicked`, reason `lease-lost`) before another node can take one over, and the node joins again.
 * - One operation per user at a time (`#exclusive`): a claim, a handoff and a release of the same user never
 *   interleave, so a user is never released while a local session is taking it.
 */
export class PresenceCoordinator {
  readonly nodeId: string;
  readonly #presence: Presence;
  readonly #options: ResolvedPresenceOptions;
  readonly #host: PresenceHost;
  /** Users this node holds in the presence. */
  readonly #held = new Set<string>();
  /** Users claimed and not yet bound to a session, with what resolves when they are. */
  readonly #binding = new Map<string, Promise<void>>();
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Claims waiting for a holder's `released` message, by user. */
  readonly #waiting = new Map<string, Set<() => void>>();
  #joined: Promise<boolean> | undefined;
  /** Why the join in progress failed last (a refused password, an unreachable server): the cause logins report. */
  #joinError: Error | undefined;
  /** Bumped at every lapse: a claim or renewal answered after one belongs to a dead incarnation. */
  #incarnation = 0;
  /** When the lease ends by this process's clock (`performance.now()`), from the last renewal sent in time. */
  #leaseEnd = Number.NEGATIVE_INFINITY;
  #renewTimer: NodeJS.Timeout | undefined;
  #lapseTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: ResolvedPresenceOptions, host: PresenceHost) {
    this.nodeId = options.nodeId;
    this.#presence = options.presence;
    this.#options = options;
    this.#host = host;
    host.log.info(
      { nodeId: this.nodeId, presence: this.#presence.name, leaseTtlMs: options.leaseTtl },
      'cagey-sessions: joining the presence',
    );
    this.#joined = this.#join();
  }

  /** How many users this node holds in the presence. */
  get held(): number {
    return this.#held.size;
  }

  /**
   * Claims the user for this node, taking it over from another node if need be. Rejects with HANDOFF_TIMEOUT
   * when the holder does not let go in time, PRESENCE_UNAVAILABLE when the presence cannot be reached.
   */
  acquire(key: string): Promise<Acquired> {
    const timeout = this.#options.handoffTimeout;
    const deadline = performance.now() + timeout;
    // Another operation on the user may be under way here (a handoff whose data is not stored yet): wait for
    // it no longer than the claim itself may take.
    let started = false;
    let timer: NodeJS.Timeout | undefined;
    const queued = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (started) return;
        reject(
          new PersistenceError(
            'HANDOFF_TIMEOUT',
            `User ${describeUserId(key)} is being handed over from this node, whose data for them is not ` +
              `stored yet; gave up after ${timeout} ms (handoffTimeout).`,
          ),
        );
      }, timeout);
    });
    queued.catch(() => {});
    const claimed = this.#exclusive(key, () => {
      if (performance.now() >= deadline)
        throw new PersistenceError('HANDOFF_TIMEOUT', 'handoffTimeout passed.');
      started = true;
      return this.#acquire(key, deadline);
    });
    return Promise.race([claimed, queued]).finally(() => clearTimeout(timer));
  }

  async #acquire(key: string, deadline: number): Promise<Acquired> {
    const started = performance.now();
    const handoff = (from: string, outcome: HandoffMessage['outcome']) =>
      publish(
        handoffChannel,
        (): HandoffMessage => ({
          manager: this.#host.manager,
          userId: key,
          from,
          outcome,
          durationMs: performance.now() - started,
        }),
      );
    let lastError: Error | undefined;
    let askedAt = Number.NEGATIVE_INFINITY;
    let holder: string | undefined;
    for (;;) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      const joined = await withTimeout(this.#ready(), remaining);
      if (joined !== true) {
        lastError ??= this.#joinError;
        break;
      }
      const incarnation = this.#incarnation;
      let claimed: ClaimResult;
      try {
        claimed = await this.#call('claim', () => this.#presence.claim(key, this.nodeId));
        lastError = undefined;
      } catch (error) {
        lastError = toError(error);
        await this.#pause(Math.min(POLL_MS, deadline - performance.now()));
        continue;
      }
      // Answered after the lease lapsed (or so late that it may have): the claim was made under a dead
      // incarnation, which other nodes take over without asking. Claim again under the new one.
      if (incarnation !== this.#incarnation) continue;
      if (performance.now() >= this.#leaseEnd) {
        this.#lapse();
        continue;
      }
      if (claimed.acquired) {
        const from = holder ?? claimed.previousOwner;
        if (from !== undefined && from !== this.nodeId) {
          handoff(from, claimed.previousOwner === undefined ? 'released' : 'expired');
        }
        return this.#acquired(key, claimed.previousOwner);
      }
      // A new holder (another login got the user first) is asked at once; the same one again after a while.
      if (claimed.owner !== holder || performance.now() - askedAt >= ASK_AGAIN_MS) {
        holder = claimed.owner;
        askedAt = performance.now();
        this.#send(holder, { type: 'release', userId: key, from: this.nodeId });
      }
      await this.#released(key, Math.min(POLL_MS, deadline - performance.now()));
    }
    if (this.#closed) {
      throw new PersistenceError('PRESENCE_UNAVAILABLE', 'The session manager is shutting down.');
    }
    if (lastError !== undefined || holder === undefined) {
      if (holder !== undefined) handoff(holder, 'unavailable');
      throw new PersistenceError(
        'PRESENCE_UNAVAILABLE',
        `Could not claim user ${describeUserId(key)}: presence "${this.#presence.name}" did not answer within ` +
          `${this.#options.handoffTimeout} ms (handoffTimeout).`,
        { cause: lastError },
      );
    }
    handoff(holder, 'timeout');
    throw new PersistenceError(
      'HANDOFF_TIMEOUT',
      `User ${describeUserId(key)} is held by node ${holder}, which did not store and release it within ` +
        `${this.#options.handoffTimeout} ms (handoffTimeout).`,
    );
  }

  #acquired(key: string, previousOwner: string | undefined): Acquired {
    this.#held.add(key);
    let bound!: () => void;
    const binding = new Promise<void>((resolve) => {
      bound = resolve;
    });
    this.#binding.set(key, binding);
    let done = false;
    return {
      // An earlier incarnation of this process is not fenced off while this process still holds the user's
      // data: its writes are queued in order behind that same state. The same node id without that data is
      // another process (a restart under the same id), fenced like any other node.
      previousOwner: previousOwner === this.nodeId && this.#host.holdsData(key) ? undefined : previousOwner,
      bound: () => {
        if (!done) {
          done = true;
          if (this.#binding.get(key) === binding) this.#binding.delete(key);
          bound();
        }
        return this.#held.has(key);
      },
    };
  }

  /**
   * The user's session on this node ended: once its data is stored, the user is released (unless a session of
   * this node took it again meanwhile). Never rejects.
   */
  releaseWhenSettled(key: string): void {
    this.#host
      .whenSettled(key)
      .then(() =>
        this.#exclusive(key, async () => {
          if (!this.#held.has(key) || this.#host.inUse(key) || this.#binding.has(key)) return;
          await this.#call('release', () => this.#presence.release(this.nodeId, [key]));
          this.#held.delete(key);
        }),
      )
      .catch((error) =>
        this.#host.log.warn(
          { userId: key, err: error },
          'cagey-sessions: could not release a user in the presence; it is freed when this node leaves or its lease expires',
        ),
      );
  }

  /** The node holding the user now: this one, another, or none. */
  async locate(key: string): Promise<string | undefined> {
    if (this.#held.has(key) && this.#joined !== undefined) return this.nodeId;
    return this.#call('locate', () => this.#presence.locate(key));
  }

  /** Stops renewing, releases every user this node holds, and leaves the presence. Never rejects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#lapseTimer);
    for (const resolve of [...this.#waiting.values()].flatMap((set) => [...set])) resolve();
    const joined = await withTimeout(this.#joined ?? Promise.resolve(false), this.#host.callTimeout);
    if (joined !== true) return;
    const held = [...this.#held];
    this.#held.clear();
    try {
      for (let i = 0; i < held.length; i += RELEASE_CHUNK) {
        const chunk = held.slice(i, i + RELEASE_CHUNK);
        await this.#call('release', () => this.#presence.release(this.nodeId, chunk));
      }
      await this.#call('leave', () => this.#presence.leave(this.nodeId));
    } catch (error) {
      this.#host.log.warn(
        { nodeId: this.nodeId, err: error },
        "cagey-sessions: could not leave the presence; other nodes take this node's users over when its lease expires",
      );
    }
  }

  #onMessage(message: PresenceMessage): void {
    if (this.#closed || typeof message !== 'object' || message === null) return;
    const { type, userId: key, from } = message;
    if (typeof key !== 'string' || typeof from !== 'string' || from === this.nodeId) return;
    if (type === 'released') {
      const waiters = this.#waiting.get(key);
      this.#waiting.delete(key);
      for (const resolve of waiters ?? []) resolve();
    } else if (type === 'release') {
      this.#handOver(key, from).catch((error) =>
        this.#host.log.warn(
          { userId: key, to: from, err: error },
          'cagey-sessions: could not hand a user over to another node; it asks again',
        ),
      );
    }
  }

  /** Another node wants the user: end the session here, store its newest data, release, and say so. */
  async #handOver(key: string, to: string): Promise<void> {
    if (this.#held.has(key) || this.#binding.has(key)) {
      await this.#exclusive(key, async () => {
        if (!this.#held.has(key)) return;
        const binding = this.#binding.get(key);
        if (binding !== undefined) {
          await binding;
          // The login that just got the user resumes first (it attaches its connection), then is kicked.
          await nextMacrotask();
        }
        if (!this.#held.has(key)) return;
        await this.#host.evict(key, { reason: 'login-elsewhere', nodeId: to });
        await this.#call('release', () => this.#presence.release(this.nodeId, [key]));
        this.#held.delete(key);
      });
    }
    this.#send(to, { type: 'released', userId: key, from: this.nodeId });
  }

  /** Runs `task` after every earlier task of the same user (claims, handoffs, releases never interleave). */
  #exclusive<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(key) ?? Promise.resolve();
    const run = previous.then(task, task);
    const settled = run.then(
      () => {},
      () => {},
    );
    this.#queues.set(key, settled);
    settled.then(() => {
      if (this.#queues.get(key) === settled) this.#queues.delete(key);
    });
    return run;
  }

  #released(key: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.#waiting.get(key) ?? new Set();
      this.#waiting.set(key, waiters);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      };
      // Not unref'd: a caller awaits this claim, so the process stays until it settles (at most handoffTimeout).
      const timer = setTimeout(done, Math.max(0, ms));
      waiters.add(done);
    });
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
  }

  #send(to: string, message: PresenceMessage): void {
    this.#call('send', () => this.#presence.send(to, message)).catch((error) =>
      this.#host.log.debug(
        { to, type: message.type, err: error },
        'cagey-sessions: presence message not sent',
      ),
    );
  }

  #ready(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    this.#joined ??= this.#join();
    return this.#joined;
  }

  /** Joins (a new incarnation), retrying with backoff until it succeeds or the manager closes. */
  async #join(): Promise<boolean> {
    for (let attempt = 0; !this.#closed; attempt++) {
      const sent = performance.now();
      try {
        await this.#call('join', () =>
          this.#presence.join(this.nodeId, this.#options.leaseTtl, (message) => this.#onMessage(message)),
        );
        this.#renewed(sent);
        this.#joinError = undefined;
        return true;
      } catch (error) {
        this.#joinError = toError(error);
        if (attempt === 0) {
          this.#host.log.error(
            { nodeId: this.nodeId, err: error },
            'cagey-sessions: could not join the presence; retrying (logins wait for it)',
          );
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 100 * 2 ** attempt)).unref());
      }
    }
    return false;
  }

  /** A renewal sent at `sent` succeeded: the lease holds until `sent + leaseTtl` less a margin for clock drift. */
  #renewed(sent: number): void {
    const ttl = this.#options.leaseTtl;
    const margin = Math.max(ttl / 10, 20);
    this.#leaseEnd = sent + ttl - margin;
    clearTimeout(this.#lapseTimer);
    this.#lapseTimer = setTimeout(() => this.#lapse(), this.#leaseEnd - performance.now()).unref();
    this.#scheduleRenewal(ttl / 3);
  }

  #scheduleRenewal(ms: number): void {
    clearTimeout(this.#renewTimer);
    // unref: an idle manager never keeps the process alive.
    this.#renewTimer = setTimeout(() => this.#renew(), ms).unref();
  }

  async #renew(): Promise<void> {
    if (this.#closed) return;
    const incarnation = this.#incarnation;
    const sent = performance.now();
    let renewed: boolean;
    try {
      renewed = await this.#call('renew', () => this.#presence.renew(this.nodeId, this.#options.leaseTtl));
    } catch (error) {
      this.#host.log.warn(
        { nodeId: this.nodeId, err: error },
        "cagey-sessions: could not renew this node's presence lease; retrying",
      );
      if (!this.#closed) this.#scheduleRenewal(this.#options.leaseTtl / 10);
      return;
    }
    // A renewal answered after a lapse renewed nothing of the new incarnation.
    if (this.#closed || incarnation !== this.#incarnation) return;
    if (renewed) this.#renewed(sent);
    else this.#lapse();
  }

  /** The lease is gone or about to be: let every user go before another node can take one, then join again. */
  #lapse(): void {
    if (this.#closed || this.#joined === undefined) return;
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#lapseTimer);
    this.#incarnation++;
    this.#leaseEnd = Number.NEGATIVE_INFINITY;
    this.#joined = undefined;
    const lost = [...this.#held];
    this.#held.clear();
    this.#host.log.error(
      { nodeId: this.nodeId, users: lost.length },
      'cagey-sessions: this node lost its presence lease; its players are kicked and it joins again',
    );
    for (const key of lost) {
      this.#host
        .evict(key, { reason: 'lease-lost', nodeId: undefined })
        .catch((error) => this.#host.log.warn({ userId: key, err: error }, 'cagey-sessions: kick failed'));
    }
    this.#joined = this.#join();
  }

  #call<T>(operation: string, call: () => Promise<T>): Promise<T> {
    return callAdapter(this.#presence.name, operation, this.#host.callTimeout, call);
  }
}

import { randomBytes } from 'node:crypto';
import { AdapterError, type ClaimResult, type Presence, type PresenceMessage } from '@cagey-sessions/core';

/** A node's current incarnation: its token and when its lease ends (`performance.now()` time). */
interface Incarnation {
  token: string;
  expiresAt: number;
  onMessage: (message: PresenceMessage) => void;
}

/** Who holds a user: a node id and the incarnation token it held it under. */
interface Holder {
  nodeId: string;
  token: string;
}

/**
 * The records behind one or more `MemoryPresence`s: several managers in one process, each with its own
 * `MemoryPresence` over one `PresenceHub`, behave like nodes sharing a Redis or PostgreSQL presence.
 */
export class PresenceHub {
  readonly #nodes = new Map<string, Incarnation>();
  readonly #users = new Map<string, Holder>();

  /** The node holding the user under a live lease, read without a presence. */
  holderOf(userId: string): string | undefined {
    const holder = this.#users.get(userId);
    return holder !== undefined && this.#alive(holder) ? holder.nodeId : undefined;
  }

  /** Users recorded as held (live lease or not), by node id. */
  records(): Map<string, string> {
    return new Map([...this.#users].map(([userId, holder]) => [userId, holder.nodeId]));
  }

  /** Ends a node's lease now, as if it had not renewed for `leaseTtl` (a crash, a cut). */
  expire(nodeId: string): void {
    const node = this.#nodes.get(nodeId);
    if (node !== undefined) node.expiresAt = Number.NEGATIVE_INFINITY;
  }

  /** @internal Starts a new incarnation of `nodeId`; resolves its token. */
  join(nodeId: string, ttlMs: number, onMessage: Incarnation['onMessage']): string {
    const token = randomBytes(8).toString('hex');
    this.#nodes.set(nodeId, { token, expiresAt: performance.now() + ttlMs, onMessage });
    return token;
  }

  /** @internal */
  renew(nodeId: string, token: string | undefined, ttlMs: number): boolean {
    const node = this.#current(nodeId, token);
    if (node === undefined || node.expiresAt <= performance.now()) return false;
    node.expiresAt = performance.now() + ttlMs;
    return true;
  }

  /** @internal */
  claim(userId: string, nodeId: string, token: string | undefined): ClaimResult {
    const node = this.#current(nodeId, token);
    if (node === undefined || node.expiresAt <= performance.now()) {
      throw new AdapterError('memory', `claim(): node ${nodeId} has not joined, or its lease expired.`, {
        code: 'PRESENCE_UNAVAILABLE',
      });
    }
    const holder = this.#users.get(userId);
    const me = { nodeId, token: node.token };
    if (holder === undefined || (holder.nodeId === nodeId && holder.token === node.token)) {
      this.#users.set(userId, me);
      return { acquired: true };
    }
    if (this.#alive(holder)) return { acquired: false, owner: holder.nodeId };
    this.#users.set(userId, me);
    return { acquired: true, previousOwner: holder.nodeId };
  }

  /** @internal */
  release(nodeId: string, token: string | undefined, userIds: readonly string[]): void {
    if (this.#current(nodeId, token) === undefined) return;
    for (const userId of userIds) {
      const holder = this.#users.get(userId);
      if (holder?.nodeId === nodeId && holder.token === token) this.#users.delete(userId);
    }
  }

  /** @internal */
  locate(userId: string): string | undefined {
    return this.holderOf(userId);
  }

  /** @internal */
  send(nodeId: string, message: PresenceMessage): void {
    const node = this.#nodes.get(nodeId);
    if (node === undefined) return;
    // Delivered later, as over a network, and as a copy: the receiver cannot alter the sender's object.
    const copy = structuredClone(message);
    setImmediate(() => {
      if (this.#nodes.get(nodeId) === node) node.onMessage(copy);
    });
  }

  /** @internal */
  leave(nodeId: string, token: string | undefined): void {
    if (this.#current(nodeId, token) !== undefined) this.#nodes.delete(nodeId);
  }

  /** The node's incarnation if `token` is its current one (a restarted process has a newer one). */
  #current(nodeId: string, token: string | undefined): Incarnation | undefined {
    const node = this.#nodes.get(nodeId);
    return node !== undefined && node.token === token ? node : undefined;
  }

  #alive(holder: Holder): boolean {
    const node = this.#nodes.get(holder.nodeId);
    return node !== undefined && node.token === holder.token && node.expiresAt > performance.now();
  }
}

export interface MemoryPresenceOptions {
  /** The shared records; managers whose presences share a hub are nodes of one cluster. Default: a new one. */
  hub?: PresenceHub;
}

/**
 * A `Presence` in memory, for tests and single-process games. `cut()` makes it unreachable (every call rejects,
 * messages to it are lost) until `restore()`, to test what a node does when it is cut off.
 */
export class MemoryPresence implements Presence {
  readonly name = 'memory';
  readonly hub: PresenceHub;
  /** The incarnation this presence started for each node id it joined, as a process holds its own. */
  readonly #tokens = new Map<string, string>();
  #cut = false;
  #closed = false;

  constructor(options: MemoryPresenceOptions = {}) {
    this.hub = options.hub ?? new PresenceHub();
  }

  /** From now on every call rejects and messages sent to this presence's node are lost. */
  cut(): void {
    this.#cut = true;
  }

  /** Ends `cut()`. */
  restore(): void {
    this.#cut = false;
  }

  async join(nodeId: string, ttlMs: number, onMessage: (message: PresenceMessage) => void): Promise<void> {
    this.#check('join');
    const token = this.hub.join(nodeId, ttlMs, (message) => {
      if (!this.#cut) onMessage(message);
    });
    this.#tokens.set(nodeId, token);
  }

  async renew(nodeId: string, ttlMs: number): Promise<boolean> {
    this.#check('renew');
    return this.hub.renew(nodeId, this.#tokens.get(nodeId), ttlMs);
  }

  async claim(userId: string, nodeId: string): Promise<ClaimResult> {
    this.#check('claim');
    return this.hub.claim(userId, nodeId, this.#tokens.get(nodeId));
  }

  async release(nodeId: string, userIds: readonly string[]): Promise<void> {
    this.#check('release');
    this.hub.release(nodeId, this.#tokens.get(nodeId), userIds);
  }

  async locate(userId: string): Promise<string | undefined> {
    this.#check('locate');
    return this.hub.locate(userId);
  }

  async send(nodeId: string, message: PresenceMessage): Promise<void> {
    this.#check('send');
    this.hub.send(nodeId, message);
  }

  async leave(nodeId: string): Promise<void> {
    this.#check('leave');
    this.hub.leave(nodeId, this.#tokens.get(nodeId));
    this.#tokens.delete(nodeId);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #check(operation: string): void {
    if (this.#closed) {
      throw new AdapterError('memory', `${operation}() on a closed MemoryPresence.`, {
        code: 'ADAPTER_CLOSED',
      });
    }
    if (this.#cut) throw new AdapterError('memory', `${operation}(): the presence is cut off (cut()).`);
  }
}

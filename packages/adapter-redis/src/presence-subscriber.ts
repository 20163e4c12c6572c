import type { Cluster, Redis } from 'ioredis';
import { ConnectionGate, closeClient } from './connection.js';

/**
 * The presence's own connection for messages: in subscriber mode a connection can run nothing else, so it is
 * never the client the presence sends commands through (nor the caller's client). ioredis subscribes again to
 * every channel after a reconnection (a standalone client re-sends its SUBSCRIBEs; a Cluster picks another
 * node when its subscriber node is lost); messages published while it was away are lost, which the presence
 * contract allows.
 */
export class MessageSubscriber {
  readonly #connection: Redis | Cluster;
  /** Waits for the connection when the presence opened the client from a URL; `undefined` otherwise. */
  readonly #gate: ConnectionGate | undefined;
  readonly #handlers = new Map<string, (payload: string) => void>();

  constructor(connection: Redis | Cluster, connectTimeoutMs: number | undefined) {
    this.#connection = connection;
    if (connectTimeoutMs === undefined) {
      // Connection errors surface through the calls that need the connection; without a listener ioredis would
      // print every failed reconnection attempt.
      connection.on('error', () => {});
    } else {
      this.#gate = new ConnectionGate(connection, connectTimeoutMs);
    }
    connection.on('message', (channel: string, payload: string) => {
      this.#handlers.get(channel)?.(payload);
    });
  }

  /** Delivers what is published on `channel` to `handler` (replacing an earlier one) once this resolves. */
  async subscribe(channel: string, handler: (payload: string) => void): Promise<void> {
    // Set first: a message can arrive right behind the server's confirmation, before this call resumes.
    const previous = this.#handlers.get(channel);
    this.#handlers.set(channel, handler);
    try {
      await this.#gate?.ready();
      await this.#connection.subscribe(channel);
    } catch (error) {
      if (previous === undefined) this.#handlers.delete(channel);
      else this.#handlers.set(channel, previous);
      throw error;
    }
  }

  /** Stops delivery on `channel` at once, then tells the server. */
  async unsubscribe(channel: string): Promise<void> {
    if (!this.#handlers.delete(channel)) return;
    await this.#gate?.ready();
    await this.#connection.unsubscribe(channel);
  }

  /** Stops delivery and closes the connection. */
  async close(): Promise<void> {
    this.#handlers.clear();
    this.#gate?.close();
    await closeClient(this.#connection);
  }
}

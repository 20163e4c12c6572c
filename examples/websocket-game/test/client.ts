import { type ClientOptions, WebSocket } from 'ws';
import { applyReply, type ClientMessage, newPlayer, type Player, type ServerMessage } from '../src/game.js';

/** A client message without its `seq`, which `request` assigns. */
export type Request = ClientMessage extends infer M ? (M extends unknown ? Omit<M, 'seq'> : never) : never;

/** A bare protocol client for tests: every frame the server sends is kept, in order. */
export class TestClient {
  readonly ws: WebSocket;
  readonly received: ServerMessage[] = [];
  /** Resolves with the close code once the connection is closed (by either side). */
  readonly closed: Promise<number>;
  /** The client's copy of its player, kept from the welcome and the deltas of every reply. */
  readonly view: { v: number; state: Player } = { v: 0, state: newPlayer() };
  /** False once a reply did not follow from the copy (a skipped version). */
  inSync = true;
  #seq = 0;
  #waiters: (() => void)[] = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as ServerMessage;
      this.received.push(message);
      if (!applyReply(this.view, message)) this.inSync = false;
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  static connect(url: string, options?: ClientOptions): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options);
      const client = new TestClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
    });
  }

  /** Sends a request and resolves with the reply carrying its `seq`. */
  async request(message: Request, timeoutMs?: number): Promise<ServerMessage> {
    const [seq] = this.pipeline([message]);
    return this.next((reply) => reply.seq === seq, timeoutMs);
  }

  /** Sends every message in one TCP write (pipelined); returns their seqs. */
  pipeline(messages: readonly Request[]): number[] {
    const socket = (this.ws as unknown as { _socket: import('node:net').Socket })._socket;
    const seqs: number[] = [];
    socket.cork();
    for (const message of messages) {
      const seq = ++this.#seq;
      seqs.push(seq);
      this.ws.send(JSON.stringify({ ...message, seq }));
    }
    socket.uncork();
    return seqs;
  }

  /** The first received message (already or later) matching `predicate`; rejects if the connection closes first. */
  async next(predicate: (message: ServerMessage) => boolean, timeoutMs = 10_000): Promise<ServerMessage> {
    const deadline = performance.now() + timeoutMs;
    for (let checked = 0; ; ) {
      for (; checked < this.received.length; checked++) {
        if (predicate(this.received[checked]!)) return this.received[checked]!;
      }
      if (this.ws.readyState !== WebSocket.OPEN)
        throw new Error('connection closed before the expected message');
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw new Error('no matching message in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
        void this.closed.then(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** A ping/pong round trip: every frame the server wrote before answering it has arrived. */
  roundTrip(): Promise<void> {
    return new Promise((resolve) => {
      this.ws.once('pong', () => resolve());
      this.ws.ping();
    });
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    if (this.ws.isPaused) this.ws.resume();
    this.ws.close();
    await Promise.race([this.closed, new Promise((resolve) => setTimeout(resolve, 2000))]);
    this.ws.terminate();
  }
}

import { createConnection, createServer, type Server, type Socket } from 'node:net';

const LOOPBACK = '127.0.0.1';
/** Bytes of earlier client data a request predicate sees before each chunk, so a split request still matches. */
const MATCH_WINDOW = 1024;

export interface FaultProxyOptions {
  /** The server to forward to; a loopback address only (127.0.0.0/8, ::1 or localhost). */
  readonly target: { readonly host: string; readonly port: number };
  /** Port to listen on (127.0.0.1); a free one by default. */
  readonly port?: number;
}

export interface CutSpec {
  /**
   * Called with each client-to-server chunk of every connection, preceded by up to 1 KiB of that connection's
   * earlier bytes (only bytes sent since `cutAfterReply` was called), until it returns true once.
   */
  readonly request: (chunk: Buffer) => boolean;
  /** Called with the whole reply buffered so far; default: true (the first reply chunk completes it). */
  readonly replyComplete?: (reply: Buffer) => boolean;
}

export interface FaultProxy {
  /** Always '127.0.0.1'. */
  readonly host: string;
  readonly port: number;
  /** The URL with its host:port replaced by the proxy's (postgres://, redis://, mongodb://); the rest is kept. */
  urlFor(url: string): string;
  /** Delays every chunk arriving from now on by `ms` in both directions, keeping their order. 0 = none. */
  setLatency(ms: number): void;
  /** Stops forwarding in both directions; bytes are held, not lost, until heal(). New connections are held too. */
  blackhole(): void;
  /** Resets every open connection pair (RST to both sides). New connections work. */
  reset(): void;
  /** Resets every open connection and every new one at once, until heal(). */
  refuse(): void;
  /** Back to forwarding; held bytes are delivered in order. */
  heal(): void;
  /**
   * One-shot: the first connection whose client sends a chunk matching `request` has its server's reply held
   * until `replyComplete`, then the reply is discarded and both sockets are reset. Resolves when that happened;
   * rejects if the connection closes first or the proxy is closed. One cut at a time.
   */
  cutAfterReply(spec: CutSpec): Promise<void>;
  /** Open client connections. */
  readonly connections: number;
  /** Closes the listener and every socket. Idempotent. */
  close(): Promise<void>;
}

type Mode = 'forward' | 'blackhole' | 'refuse';

interface Cut {
  readonly request: (chunk: Buffer) => boolean;
  readonly replyComplete: (reply: Buffer) => boolean;
  resolve(): void;
  reject(error: Error): void;
}

/** Starts a proxy on 127.0.0.1 that forwards every connection to `target`, with faults switched on by calls. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  if (!isLoopback(options.target.host)) {
    throw new Error(`fault proxy: target must be a loopback address, got ${options.target.host}`);
  }
  const proxy = new TcpFaultProxy(options.target);
  await proxy.listen(options.port ?? 0);
  return proxy;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** RST when possible (a connected TCP socket), else a plain destroy. */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

class TcpFaultProxy implements FaultProxy {
  readonly host = LOOPBACK;
  mode: Mode = 'forward';
  latency = 0;
  pendingCut: Cut | undefined;
  readonly links = new Set<Link>();
  private readonly server: Server;
  private closing: Promise<void> | undefined;

  constructor(readonly target: { readonly host: string; readonly port: number }) {
    this.server = createServer((socket) => this.accept(socket));
  }

  listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ port, host: LOOPBACK, exclusive: true }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === 'object' && address ? address.port : 0;
  }

  get connections(): number {
    let open = 0;
    for (const link of this.links) if (!link.client.destroyed) open++;
    return open;
  }

  urlFor(url: string): string {
    const parts = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*@)?[^/?#@]*(.*)$/is.exec(url);
    if (!parts)
      throw new Error('fault proxy: urlFor expects scheme://[user[:password]@]host[:port][/path][?query]');
    return `${parts[1]}${parts[2] ?? ''}${this.host}:${this.port}${parts[3]}`;
  }

  setLatency(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`latency must be a number >= 0, got ${ms}`);
    this.latency = ms;
  }

  blackhole(): void {
    this.mode = 'blackhole';
  }

  reset(): void {
    for (const link of this.links) link.abort();
  }

  refuse(): void {
    this.mode = 'refuse';
    this.reset();
  }

  heal(): void {
    this.mode = 'forward';
    for (const link of this.links) link.resume();
  }

  cutAfterReply(spec: CutSpec): Promise<void> {
    if (this.closing) return Promise.reject(new Error('fault proxy: closed'));
    if (this.pendingCut || [...this.links].some((link) => link.armed)) {
      return Promise.reject(new Error('fault proxy: a cutAfterReply is already pending'));
    }
    for (const link of this.links) link.window = Buffer.alloc(0);
    return new Promise((resolve, reject) => {
      this.pendingCut = {
        request: spec.request,
        replyComplete: spec.replyComplete ?? (() => true),
        resolve,
        reject,
      };
    });
  }

  close(): Promise<void> {
    this.closing ??= new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const link of this.links) link.abort();
      this.pendingCut?.reject(new Error('fault proxy: closed before the cut'));
      this.pendingCut = undefined;
    });
    return this.closing;
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    if (this.mode === 'refuse' || this.closing) {
      resetSocket(socket);
      return;
    }
    const link = new Link(this, socket);
    this.links.add(link);
    if (this.mode === 'forward') link.connect();
  }
}

/** One client connection and its connection to the target. */
class Link {
  server: Socket | undefined;
  /** The client's latest bytes since the current cut was requested, for requests split across reads. */
  window = Buffer.alloc(0);
  armed: (Cut & { reply: Buffer[] }) | undefined;
  private readonly toServer: Lane;
  private readonly toClient: Lane;
  private aborted = false;

  constructor(
    private readonly proxy: TcpFaultProxy,
    readonly client: Socket,
  ) {
    client.setNoDelay(true);
    this.toServer = new Lane(proxy, () => ({ from: client, to: this.server }));
    this.toClient = new Lane(proxy, () => ({ from: this.server, to: client }));
    client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    client.on('end', () => this.toServer.push('end'));
    client.on('error', () => this.abort());
    client.on('close', () => this.closed());
  }

  /** Opens the connection to the target (deferred while the proxy is a black hole). */
  connect(): void {
    if (this.server || this.aborted) return;
    const server = createConnection({ host: this.proxy.target.host, port: this.proxy.target.port });
    this.server = server;
    server.setNoDelay(true);
    server.on('connect', () => this.toServer.pump());
    server.on('data', (chunk: Buffer) => this.fromServer(chunk));
    server.on('end', () => this.toClient.push('end'));
    server.on('error', () => this.abort());
    server.on('close', () => this.closed());
  }

  resume(): void {
    this.connect();
    this.toServer.pump();
    this.toClient.pump();
  }

  /** Resets both sockets and drops whatever is queued. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.toServer.clear();
    this.toClient.clear();
    resetSocket(this.client);
    if (this.server) resetSocket(this.server);
    this.closed();
  }

  private fromClient(chunk: Buffer): void {
    const cut = this.proxy.pendingCut;
    if (cut) {
      const seen = this.window.length > 0 ? Buffer.concat([this.window, chunk]) : chunk;
      this.window = Buffer.from(seen.subarray(Math.max(0, seen.length - MATCH_WINDOW)));
      let matched = false;
      try {
        matched = cut.request(seen);
      } catch (error) {
        this.proxy.pendingCut = undefined;
        cut.reject(error instanceof Error ? error : new Error(String(error)));
      }
      if (matched) {
        this.proxy.pendingCut = undefined;
        this.armed = { ...cut, reply: [] };
      }
    }
    // Armed before the request is forwarded, so no byte of its reply can slip through.
    this.toServer.push(chunk);
  }

  private fromServer(chunk: Buffer): void {
    const armed = this.armed;
    if (!armed) {
      this.toClient.push(chunk);
      return;
    }
    armed.reply.push(chunk);
    let complete: boolean;
    try {
      complete = armed.replyComplete(Buffer.concat(armed.reply));
    } catch (error) {
      this.armed = undefined;
      armed.reject(error instanceof Error ? error : new Error(String(error)));
      this.abort();
      return;
    }
    if (!complete) return;
    this.armed = undefined;
    this.abort();
    armed.resolve();
  }

  private closed(): void {
    if (this.armed && (this.client.destroyed || this.server?.destroyed)) {
      this.armed.reject(new Error('fault proxy: the connection closed before the reply was complete'));
      this.armed = undefined;
    }
    if (this.client.destroyed && (!this.server || this.server.destroyed)) this.proxy.links.delete(this);
  }
}

/** One direction of a link: chunks leave in arrival order, each after its delay, none while the proxy holds. */
class Lane {
  private readonly queue: { data: Buffer | 'end'; due: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private waitingForDrain = false;

  constructor(
    private readonly proxy: TcpFaultProxy,
    private readonly ends: () => { from: Socket | undefined; to: Socket | undefined },
  ) {}

  push(data: Buffer | 'end'): void {
    this.queue.push({ data, due: Date.now() + this.proxy.latency });
    this.pump();
  }

  pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const { to } = this.ends();
    if (this.proxy.mode !== 'forward' || !to || to.connecting || to.destroyed) return;
    // Each step removes one queued item, so the loop ends.
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const wait = head.due - Date.now();
      if (wait > 0) {
        this.timer = setTimeout(() => this.pump(), wait);
        return;
      }
      this.queue.shift();
      if (head.data === 'end') to.end();
      else if (!to.write(head.data) && !this.waitingForDrain) this.holdSource(to);
    }
  }

  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }

  /** Backpressure: stop reading the source until the destination has drained. */
  private holdSource(to: Socket): void {
    const { from } = this.ends();
    if (!from) return;
    this.waitingForDrain = true;
    from.pause();
    to.once('drain', () => {
      this.waitingForDrain = false;
      from.resume();
    });
  }
}

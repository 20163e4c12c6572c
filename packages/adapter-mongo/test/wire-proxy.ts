import { once } from 'node:events';
import { type AddressInfo, createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { BSON, type Document } from 'mongodb';

/** What the proxy does with a command the client sends. */
export type CommandAction =
  /** Pass it on (the default). */
  | 'forward'
  /** Close the connection without passing it on: the server never sees the command. */
  | 'cut'
  /** Pass it on, then close the connection when the server answers, instead of passing the answer back. */
  | 'lose-reply';

export interface Command {
  /** The command's name (its body's first key), e.g. `insert`, `update`, `find`, `hello`. */
  name: string;
  /** The value of that first key when it is a string: the collection name of a CRUD command. */
  target: string | undefined;
}

/**
 * A TCP proxy on 127.0.0.1 between a MongoDB driver and a server that understands the wire protocol well enough
 * to act on one command: cut the connection before the server gets it, lose the server's answer, or rewrite the
 * answer. `down` refuses connections and cuts every command, like a server that went away.
 */
export class WireProxy {
  /** Decides, per OP_MSG command, what happens to it. */
  onCommand: (command: Command) => CommandAction = () => 'forward';
  /** Rewrites the server's answer to a command (OP_MSG body), e.g. to add a `writeConcernError`. */
  onReply: ((command: Command, reply: Document) => Document | undefined) | undefined;
  /** Every command seen, in order. */
  readonly commands: Command[] = [];
  #down = false;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(
    server: Server,
    readonly target: { host: string; port: number },
  ) {
    this.#server = server;
  }

  /** Starts a proxy to `target` on `port` (default: a free one). */
  static async start(target: { host: string; port: number }, port = 0): Promise<WireProxy> {
    const server = createServer();
    const proxy = new WireProxy(server, target);
    server.on('connection', (client) => proxy.#accept(client));
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** `url` (a `mongodb://` URL, credentials kept) pointed at this proxy, as a direct connection. */
  urlFor(url: string): string {
    const proxied = url.replace(/^(mongodb:\/\/(?:[^@/?]*@)?)[^/?]*/, `$1127.0.0.1:${this.port}`);
    const [base, query] = proxied.split('?') as [string, string | undefined];
    const path = base.slice('mongodb://'.length).includes('/') ? base : `${base}/`;
    const params = (query ?? '')
      .split('&')
      .filter((pair) => pair !== '' && !/^directConnection=/i.test(pair));
    return `${path}?${[...params, 'directConnection=true'].join('&')}`;
  }

  get down(): boolean {
    return this.#down;
  }

  /** While down, new connections are closed at once and every command closes its connection unanswered. */
  set down(down: boolean) {
    this.#down = down;
  }

  /** The next command matching `matches` gets `action`; every other command is forwarded. */
  once(matches: (command: Command) => boolean, action: CommandAction, then?: () => void): void {
    let done = false;
    this.onCommand = (command) => {
      if (done || !matches(command)) return 'forward';
      done = true;
      then?.();
      return action;
    };
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    if (this.#down) {
      client.destroy();
      return;
    }
    const upstream = netConnect(this.target.port, this.target.host);
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    const cut = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on('error', cut).on('close', cut);
    upstream.on('error', cut).on('close', cut);
    /** The commands forwarded on this connection whose answers have not come back yet, oldest first. */
    const inFlight: { command: Command | undefined; action: CommandAction }[] = [];

    framed(client, (message) => {
      const command = commandOf(message);
      if (command !== undefined) this.commands.push(command);
      const action = this.#down ? 'cut' : command === undefined ? 'forward' : this.onCommand(command);
      if (action === 'cut') {
        cut();
        return;
      }
      // A message with moreToCome (flag bit 1) gets no answer of its own.
      if (!hasMoreToCome(message)) inFlight.push({ command, action });
      upstream.write(message);
    });
    framed(upstream, (message) => {
      // Streamed answers (exhaust hello) answer the same request again: only the last one pops it.
      const request = hasMoreToCome(message) ? inFlight[0] : inFlight.shift();
      if (request?.action === 'lose-reply') {
        cut();
        return;
      }
      const rewrite = this.onReply;
      if (rewrite !== undefined && request?.command !== undefined) {
        const body = bodyOf(message);
        const replaced = body === undefined ? undefined : rewrite(request.command, body);
        if (replaced !== undefined) {
          client.write(withBody(message, replaced));
          return;
        }
      }
      client.write(message);
    });
  }
}

const OP_MSG = 2013;

/** Calls `onMessage` with each whole wire message read from `socket` (4-byte little-endian length first). */
function framed(socket: Socket, onMessage: (message: Buffer) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4) {
      const length = buffered.readInt32LE(0);
      if (buffered.length < length) break;
      const message = buffered.subarray(0, length);
      buffered = buffered.subarray(length);
      onMessage(message);
      if (socket.destroyed) return;
    }
  });
}

function hasMoreToCome(message: Buffer): boolean {
  return message.readInt32LE(12) === OP_MSG && (message.readUInt32LE(16) & 2) !== 0;
}

/** The command an OP_MSG carries, read from the first element of its body (section kind 0). */
function commandOf(message: Buffer): Command | undefined {
  if (message.readInt32LE(12) !== OP_MSG || message[20] !== 0) return undefined;
  const type = message[25];
  const nameEnd = message.indexOf(0, 26);
  const name = message.toString('utf8', 26, nameEnd);
  let target: string | undefined;
  if (type === 0x02) {
    const length = message.readInt32LE(nameEnd + 1);
    target = message.toString('utf8', nameEnd + 5, nameEnd + 5 + length - 1);
  }
  return { name, target };
}

function bodyOf(message: Buffer): Document | undefined {
  if (message.readInt32LE(12) !== OP_MSG || message[20] !== 0) return undefined;
  const length = message.readInt32LE(21);
  return BSON.deserialize(message.subarray(21, 21 + length));
}

/** The OP_MSG `message` with its body replaced (and no checksum). */
function withBody(message: Buffer, body: Document): Buffer {
  const bson = BSON.serialize(body);
  const header = Buffer.alloc(21);
  header.writeInt32LE(21 + bson.length, 0);
  message.copy(header, 4, 4, 16);
  header.writeUInt32LE(message.readUInt32LE(16) & ~1, 16);
  header[20] = 0;
  return Buffer.concat([header, bson]);
}

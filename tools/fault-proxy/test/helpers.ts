import { createConnection, createServer, type Socket } from 'node:net';
import { INSTALL_HINT, type ServerKind, serverAvailability } from '@cagey-sessions/test-servers';

/** Missing binaries skip the tests with a loud warning, except with CI=true, where they fail the run. */
export function serverInstalled(kind: ServerKind): boolean {
  const { available, missing } = serverAvailability(kind);
  if (available) return true;
  const message = `${kind} not installed (${missing.join(', ')}); install with: ${INSTALL_HINT}`;
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`\n!!! SKIPPING ${kind} tests: ${message}\n`);
  return false;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves `promise`'s outcome, or 'pending' when it has not settled within `ms`. */
export async function settledWithin<T>(
  promise: Promise<T>,
  ms: number,
): Promise<{ value: T } | { error: unknown } | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export interface EchoServer {
  readonly port: number;
  /** Connections the echo server has accepted so far. */
  readonly accepted: number;
  /** Sockets the echo server holds, for checking what happened to them. */
  readonly sockets: Socket[];
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1 that writes every chunk straight back. */
export async function startEcho(): Promise<EchoServer> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => socket.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1' }, resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    get accepted() {
      return sockets.length;
    },
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface Peer {
  readonly socket: Socket;
  /** Everything received so far, as text. */
  received(): string;
  /** Resolves true once the received text includes `text`, false after `timeoutMs`. */
  waitFor(text: string, timeoutMs?: number): Promise<boolean>;
  /** Resolves when the socket closed, with the error code that closed it, if any. */
  readonly closed: Promise<{ code: string | undefined }>;
}

/** A client connection to 127.0.0.1:`port` that records what it receives; resolves once connected. */
export function connect(port: number): Promise<Peer> {
  const socket = createConnection({ port, host: '127.0.0.1' });
  socket.setNoDelay(true);
  let text = '';
  let error: NodeJS.ErrnoException | undefined;
  const listeners = new Set<() => void>();
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8');
    for (const listener of listeners) listener();
  });
  socket.on('error', (cause: NodeJS.ErrnoException) => {
    error = cause;
  });
  const closed = new Promise<{ code: string | undefined }>((resolve) => {
    socket.once('close', () => resolve({ code: error?.code }));
  });
  const peer: Peer = {
    socket,
    received: () => text,
    waitFor: (wanted, timeoutMs = 2_000) =>
      new Promise((resolve) => {
        const check = () => {
          if (!text.includes(wanted)) return;
          done(true);
        };
        const timer = setTimeout(() => done(false), timeoutMs);
        const done = (found: boolean) => {
          clearTimeout(timer);
          listeners.delete(check);
          resolve(found);
        };
        listeners.add(check);
        check();
      }),
    closed,
  };
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(peer));
    socket.once('error', reject);
  });
}

import { createConnection, createServer } from 'node:net';

export const LOOPBACK = '127.0.0.1';

/** True when nothing listens on `port` and it can be bound on loopback right now. */
export function isPortFree(port: number, host = LOOPBACK): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/**
 * A port the OS considers free on loopback (bind to port 0, read it, release it). Another process may take it
 * before the server binds it, so every start retries with a new port when the server reports EADDRINUSE.
 */
export function freePort(host = LOOPBACK): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read a free port'))));
    });
  });
}

/** Offset of a Redis Cluster node's bus port from its client port (fixed by Redis). */
export const CLUSTER_BUS_OFFSET = 10_000;

/** A free port whose Redis Cluster bus port (port + 10000) is free too. Bounded: 50 attempts. */
export async function freeClusterPort(exclude: ReadonlySet<number> = new Set()): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort();
    const bus = port + CLUSTER_BUS_OFFSET;
    if (bus > 65_535 || exclude.has(port) || exclude.has(bus)) continue;
    if (await isPortFree(bus)) return port;
  }
  throw new Error(
    'found no free loopback port whose cluster bus port (port + 10000) is free, in 50 attempts',
  );
}

/** One TCP connection attempt to `host:port`; true when it was accepted (then closed at once). */
export function canConnect(port: number, host = LOOPBACK, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** A server exited at startup because its port was taken between choosing it and binding it. */
export class PortInUseError extends Error {
  constructor(readonly port: number) {
    super(`port ${port} on ${LOOPBACK} is already in use`);
    this.name = 'PortInUseError';
  }
}

/** Calls `launch` with free ports until one binds; bounded to `attempts` ports. */
export async function onFreePort<T>(
  launch: (port: number) => Promise<T>,
  choose: () => Promise<number> = () => freePort(),
  attempts = 5,
): Promise<{ port: number; value: T }> {
  let last: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const port = await choose();
    try {
      return { port, value: await launch(port) };
    } catch (error) {
      if (!(error instanceof PortInUseError)) throw error;
      last = error;
    }
  }
  throw new Error(`could not bind a free loopback port in ${attempts} attempts`, { cause: last });
}

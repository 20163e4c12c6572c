import { writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { ServerUnavailableError } from './availability.js';
import { locateRedis, type RedisBinaries } from './binaries.js';
import { makeServerDir, removeServerDir } from './dirs.js';
import { allProcesses, oneProcess, portTakenOnRestart, serverControls } from './lifecycle.js';
import { freeClusterPort, LOOPBACK, onFreePort, PortInUseError } from './ports.js';
import { delay, indent, ManagedProcess, run, waitUntilReady } from './process.js';
import type { RunningServer } from './types.js';

export interface RedisServerOptions {
  /** Sets `requirepass`; the URL then carries it (`redis://:<password>@127.0.0.1:<port>`). */
  readonly password?: string;
  /** Extra redis.conf lines, e.g. `['maxmemory 64mb']`. */
  readonly config?: readonly string[];
  /**
   * Persist every write before acknowledging it (`appendonly yes`, `appendfsync always`, the append-only files in
   * the server's directory), so the data survives `kill()` + `restart()` as well as `restart()`. Default false.
   */
  readonly appendOnly?: boolean;
  /** Bound on each wait for the server to answer PING. Default 30 s. */
  readonly timeoutMs?: number;
}

export interface RedisServer extends RunningServer {
  readonly password: string | undefined;
  /** Whether it was started with `appendOnly: true`. */
  readonly appendOnly: boolean;
  /** The temporary directory (redis.conf, working directory). */
  readonly dir: string;
}

/** Nothing is persisted: a test server's data lives as long as the process. */
const BASE_CONFIG = ['bind 127.0.0.1', 'save ""', 'appendonly no', 'daemonize no', 'logfile ""'];

/** `appendOnly: true`: every write reaches the disk before its reply. */
const APPEND_ONLY_CONFIG = [
  ...BASE_CONFIG.filter((line) => line !== 'appendonly no'),
  'appendonly yes',
  'appendfsync always',
];

/**
 * Starts `redis-server` on 127.0.0.1 on a free port, persistence off (unless `appendOnly`), working directory in
 * a fresh temporary directory. The settings go through a redis.conf in that directory (mode 0600), so a password
 * never shows in a process listing.
 *
 * `restart()` stops the server and starts it again on the same port. Without `appendOnly` persistence is off, so
 * **the data is lost** on restart: use it to test reconnection, not durability. `stop()` stops it and removes the
 * directory. Both are idempotent; the server is killed if this process exits without stopping it.
 */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const binaries = requireRedis('redis', false);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const dir = makeServerDir('redis');
  try {
    const appendOnly = options.appendOnly ?? false;
    const config = [...(appendOnly ? APPEND_ONLY_CONFIG : BASE_CONFIG), ...(options.config ?? [])];
    if (options.password !== undefined) config.push(`requirepass ${quoteConfig(options.password)}`);
    const launch = (port: number) => launchRedis(binaries, dir, port, config, timeoutMs);
    const started = await onFreePort(launch);
    const port = started.port;
    let child = started.value;
    const auth = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
    return {
      url: `redis://${auth}${LOOPBACK}:${port}`,
      host: LOOPBACK,
      port,
      password: options.password,
      appendOnly,
      dir,
      ...serverControls('redis', dir, {
        ...oneProcess(() => child, timeoutMs),
        relaunch: async () => {
          child = await launch(port).catch(portTakenOnRestart('redis', port));
        },
      }),
    };
  } catch (error) {
    removeServerDir(dir);
    throw error;
  }
}

export interface RedisClusterOptions {
  /** Number of master nodes (no replicas), at least 3 as `redis-cli --cluster create` requires. Default 3. */
  readonly masters?: number;
  /** Bound on each node's start, on cluster creation and on each wait for `cluster_state:ok`. Default 30 s. */
  readonly timeoutMs?: number;
}

export interface RedisClusterNode {
  readonly host: string;
  readonly port: number;
}

export interface RedisCluster extends RunningServer {
  /** Every master, for a cluster client's startup nodes (e.g. `new Cluster(cluster.nodes)` in ioredis). */
  readonly nodes: readonly RedisClusterNode[];
  /** The first node as `redis://127.0.0.1:<port>`: a seed from which a cluster client discovers the others. */
  readonly url: string;
  readonly dir: string;
}

/**
 * Starts a Redis Cluster of `masters` nodes (no replicas) on 127.0.0.1, each on a free port whose cluster bus
 * port (port + 10000) is free too, joins them with `redis-cli --cluster create` and waits until every node
 * reports `cluster_state:ok`.
 *
 * `restart()` restarts every node on its port; the cluster forms again from its nodes.conf files but **the data
 * is lost** (persistence is off). `stop()` stops every node and removes the directory.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  if (!Number.isInteger(masters) || masters < 3 || masters > 32) {
    throw new RangeError(
      `masters must be an integer from 3 to 32 (redis-cli --cluster create needs 3), got ${masters}`,
    );
  }
  const binaries = requireRedis('redis-cluster', true);
  const cli = binaries.redisCli!;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const dir = makeServerDir('redis-cluster');
  const children = new Map<number, ManagedProcess>();
  const nodeProcesses = allProcesses(() => children.values(), timeoutMs);
  const stopAll = nodeProcesses.stop;
  try {
    const config = (port: number) => [
      ...BASE_CONFIG,
      'cluster-enabled yes',
      `cluster-config-file nodes-${port}.conf`,
      'cluster-node-timeout 5000',
    ];
    const launch = (port: number) =>
      launchRedis(binaries, dir, port, config(port), timeoutMs, `redis-${port}.conf`);
    const taken = new Set<number>();
    for (let node = 0; node < masters; node++) {
      const started = await onFreePort(launch, () => freeClusterPort(taken));
      children.set(started.port, started.value);
      taken.add(started.port).add(started.port + 10_000);
    }
    const ports = [...children.keys()];
    const created = await run(
      cli,
      [
        '--cluster',
        'create',
        ...ports.map((port) => `${LOOPBACK}:${port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { cwd: dir, timeoutMs },
    );
    if (created.code !== 0 || !created.stdout.includes('All 16384 slots covered')) {
      throw new Error(
        `redis-cli --cluster create failed (exit code ${created.code}):\n${indent(created.stdout + created.stderr)}`,
      );
    }
    await waitForClusterOk(cli, ports, timeoutMs);

    const nodes = ports.map((port) => ({ host: LOOPBACK, port }));
    return {
      url: `redis://${LOOPBACK}:${ports[0]}`,
      host: LOOPBACK,
      port: ports[0]!,
      nodes,
      dir,
      ...serverControls('redis cluster', dir, {
        ...nodeProcesses,
        relaunch: async () => {
          for (const port of ports) {
            children.set(port, await launch(port).catch(portTakenOnRestart('redis cluster node', port)));
          }
          await waitForClusterOk(cli, ports, timeoutMs);
        },
      }),
    };
  } catch (error) {
    await stopAll().catch(() => undefined);
    removeServerDir(dir);
    throw error;
  }
}

function requireRedis(kind: string, needCli: boolean): RedisBinaries {
  const located = locateRedis({ needCli });
  if (!located.found) throw new ServerUnavailableError(kind, located.missing);
  return located.found;
}

async function launchRedis(
  binaries: RedisBinaries,
  dir: string,
  port: number,
  config: readonly string[],
  timeoutMs: number,
  configName = 'redis.conf',
): Promise<ManagedProcess> {
  const configFile = join(dir, configName);
  writeFileSync(configFile, [...config, `port ${port}`, `dir ${quoteConfig(dir)}`, ''].join('\n'), {
    mode: 0o600,
  });
  const child = new ManagedProcess({
    name: `redis-server (port ${port})`,
    command: binaries.redisServer,
    args: [configFile],
    cwd: dir,
    stopSignal: 'SIGTERM',
    orphanSignal: 'SIGKILL',
  });
  await waitUntilReady(child, {
    what: `redis-server on ${LOOPBACK}:${port}`,
    timeoutMs,
    ready: async () => {
      const reply = await firstReplyLine(port, 'PING');
      // NOAUTH means it serves commands and wants the password; LOADING or no answer means not yet.
      return reply === '+PONG' || reply?.startsWith('-NOAUTH') === true;
    },
    portInUse: (output) => output.includes('Address already in use'),
    onPortInUse: () => new PortInUseError(port),
  });
  return child;
}

/** Every node must see all slots covered before a cluster client is pointed at it. */
async function waitForClusterOk(cli: string, ports: readonly number[], timeoutMs: number): Promise<void> {
  const started = Date.now();
  let last = '';
  for (let attempt = 0; attempt < 1_000 && Date.now() - started < timeoutMs; attempt++) {
    const infos = await Promise.all(
      ports.map((port) =>
        run(cli, ['-h', LOOPBACK, '-p', String(port), 'cluster', 'info'], { timeoutMs: 5_000 }),
      ),
    );
    const notOk = infos.flatMap((info, index) =>
      info.code === 0 && /^cluster_state:ok\r?$/m.test(info.stdout) ? [] : [ports[index]],
    );
    if (notOk.length === 0) return;
    last = `nodes not ok: ${notOk.join(', ')}\n${infos.map((info) => info.stdout + info.stderr).join('\n')}`;
    await delay(100);
  }
  throw new Error(`redis cluster did not reach cluster_state:ok within ${timeoutMs} ms:\n${indent(last)}`);
}

/** redis.conf string argument: double-quoted, with backslash escapes. */
function quoteConfig(value: string): string {
  return `"${value
    .replace(/[\\"]/g, (char) => `\\${char}`)
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r')}"`;
}

/** Sends one inline command and resolves the first reply line, or undefined (refused, closed, 1 s timeout). */
function firstReplyLine(port: number, command: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: LOOPBACK });
    let buffer = '';
    const done = (line: string | undefined) => {
      socket.destroy();
      resolve(line);
    };
    socket.setEncoding('utf8');
    socket.setTimeout(1_000, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('close', () => done(undefined));
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf('\r\n');
      if (end >= 0) done(buffer.slice(0, end));
    });
  });
}

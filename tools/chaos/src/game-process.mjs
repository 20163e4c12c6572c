/**
 * What every game process the chaos runner forks shares (`game-server.mjs`, `presence-node.mjs`): its
 * configuration, one JSON object per log line on stdout, the lifetime guard, the store's adapter, one operation
 * per user at a time, and the IPC command loop:
 *
 *   parent -> child  { id, cmd, ...args }
 *   child -> parent  { id, ok: true, result } | { id, ok: false, error: { name, code, message, ... } }
 *
 * Written the way a user writes a game server: plain JavaScript over the packages as installed (their `dist`).
 */

/** The process's configuration: JSON in the CHAOS_GAME_CONFIG environment variable. */
export const config = JSON.parse(process.env.CHAOS_GAME_CONFIG ?? '{}');

/**
 * A value as JSON the parent can read: errors as `{ name, message, code, phase, unsaved, cause }` (what the
 * runner checks), deep values cut off, bigints as strings.
 */
export function serialise(value, depth = 0) {
  if (value instanceof Error) {
    const out = { name: value.name, message: value.message };
    if (value.code !== undefined) out.code = value.code;
    if (value.phase !== undefined) out.phase = value.phase;
    if (Array.isArray(value.unsaved)) {
      out.unsaved = value.unsaved.map((u) => ({
        userId: u.userId,
        maybeStored: u.maybeStored,
        error: u.error?.code ?? u.error?.message,
      }));
    }
    if (value.cause !== undefined && depth < 2) out.cause = serialise(value.cause, depth + 1);
    return out;
  }
  if (Array.isArray(value)) return depth > 4 ? '[array]' : value.map((v) => serialise(v, depth + 1));
  if (value !== null && typeof value === 'object') {
    if (depth > 4) return '[object]';
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, serialise(v, depth + 1)]));
  }
  if (typeof value === 'bigint') return String(value);
  return value;
}

/**
 * Log lines of `node`: `write(level, args)` prints one JSON line `{ t, level, node, ...fields, msg }` (strings
 * joined into `msg`, an error as `err`, objects merged in); `log` is the library's logger over it.
 */
export function jsonLines(node) {
  function write(level, args) {
    let fields = {};
    let msg = '';
    for (const arg of args) {
      if (typeof arg === 'string') msg = msg === '' ? arg : `${msg} ${arg}`;
      else if (arg instanceof Error) fields.err = serialise(arg);
      else if (arg !== null && typeof arg === 'object') fields = { ...fields, ...serialise(arg) };
      else if (arg !== undefined) msg = `${msg} ${String(arg)}`;
    }
    // Pipes are written synchronously on Linux: a line logged just before exit (or a SIGKILL) is not lost.
    process.stdout.write(`${JSON.stringify({ t: Date.now(), level, node, ...fields, msg })}\n`);
  }
  const log = {
    debug: () => {},
    info: (...args) => write('info', args),
    warn: (...args) => write('warn', args),
    error: (...args) => write('error', args),
  };
  return { write, log };
}

/** A run that goes wrong must not leave this process behind: exits with code 3 after `config.lifetimeMs`. */
export function exitAfterLifetime(log, what) {
  setTimeout(() => {
    log.error({ lifetimeMs: config.lifetimeMs }, `${what}: lifetime exceeded, exiting`);
    process.exit(3);
  }, config.lifetimeMs ?? 300_000).unref();
}

/** The adapter of `config.store` over `config.url`, its table, prefix or collection named by `config.namespace`. */
export async function openAdapter() {
  const namespace = config.namespace;
  switch (config.store) {
    case 'postgres': {
      const { PostgresAdapter } = await import('@cagey-sessions/adapter-postgres');
      const adapter = new PostgresAdapter({
        url: config.url,
        table: `chaos_${namespace}`,
        clientOptions: { max: 6 },
      });
      await adapter.setup();
      return adapter;
    }
    case 'redis': {
      const { RedisAdapter } = await import('@cagey-sessions/adapter-redis');
      const adapter = new RedisAdapter({ url: config.url, prefix: `chaos:${namespace}:` });
      await adapter.setup?.();
      return adapter;
    }
    case 'mongo': {
      const { MongoAdapter } = await import('@cagey-sessions/adapter-mongo');
      // FerretDB 1.x: one bulkWrite holds at most 50 updates (see the adapter's README).
      const adapter = new MongoAdapter({
        url: config.url,
        collection: `chaos_${namespace}`,
        maxUpdatesPerBulkWrite: 50,
      });
      await adapter.setup();
      return adapter;
    }
    default:
      throw new Error(`unknown store ${config.store}`);
  }
}

/**
 * `withUser(userId, operation)`: runs `operation` after every earlier operation of the same user has settled, so
 * one user's operations never interleave (other users' run meanwhile).
 */
export function oneAtATimePerUser() {
  /** userId -> tail of the promise chain that runs this user's operations one at a time. */
  const chains = new Map();
  return function withUser(userId, operation) {
    const previous = chains.get(userId) ?? Promise.resolve();
    const next = previous.then(operation, operation);
    const tail = next.catch(() => {});
    chains.set(userId, tail);
    tail.then(() => {
      if (chains.get(userId) === tail) chains.delete(userId);
    });
    return next;
  };
}

/**
 * Answers the parent's commands over IPC with `commands[cmd](message)`, and exits (code 4) when the parent
 * disconnects without stopping this process, unless `isShuttingDown()` (then the shutdown goes on).
 */
export function serveCommands(commands, { log, what, isShuttingDown }) {
  process.on('message', async (message) => {
    const { id, cmd } = message ?? {};
    const handler = commands[cmd];
    let reply;
    try {
      if (handler === undefined) throw new Error(`unknown command ${cmd}`);
      reply = { id, ok: true, result: await handler(message) };
    } catch (error) {
      reply = { id, ok: false, error: serialise(error) };
    }
    if (process.connected) process.send(reply);
  });
  process.on('disconnect', () => {
    if (!isShuttingDown()) {
      log.error(`${what}: the parent disconnected; exiting`);
      process.exit(4);
    }
  });
}

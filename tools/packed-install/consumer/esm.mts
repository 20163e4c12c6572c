/**
 * An ES module application of the packed packages. tools/packed-install copies it into a scratch project that
 * installed the tarballs with npm, compiles it against their declarations and runs it there. No database:
 * MemoryAdapter and PGlite do the storing; the Redis and Mongo adapters get clients that never connect.
 */
import assert from 'node:assert/strict';

// First, before anything else is loaded: the cost of the test tools on their own.
const started = performance.now();
const { FaultyAdapter, MemoryAdapter, MemoryStore } = await import('@cagey-sessions/testing');
const testingMs = performance.now() - started;
assert.equal(typeof FaultyAdapter, 'function');
console.log(`import('@cagey-sessions/testing'): MemoryAdapter, FaultyAdapter in ${testingMs.toFixed(0)} ms`);

// vitest is an optional peer, not installed here: only the conformance entry point asks for it.
const missing = await import('@cagey-sessions/testing/conformance').then(
  () => undefined,
  (error: NodeJS.ErrnoException) => error,
);
assert.equal(missing?.code, 'ERR_MODULE_NOT_FOUND', 'the conformance entry point loads without vitest?');
assert.match(missing.message, /'vitest'/);
console.log(`import('@cagey-sessions/testing/conformance') without vitest: ${missing.code}, names 'vitest'`);

const { create, ValidationError } = await import('@cagey-sessions/core');
const { decideWrite } = await import('@cagey-sessions/core/adapter-kit');
const { PostgresAdapter } = await import('@cagey-sessions/adapter-postgres');
const { RedisAdapter } = await import('@cagey-sessions/adapter-redis');
const { MongoAdapter } = await import('@cagey-sessions/adapter-mongo');
assert.equal(typeof decideWrite, 'function');
console.log('import() of core, core/adapter-kit and the three adapters: ok');

interface Player {
  gold: number;
  inventory: string[];
}

// A session over MemoryAdapter, FaultyAdapter in between: a failed write is retried by persistNow's caller.
const store = new MemoryStore();
const faulty = new FaultyAdapter(new MemoryAdapter({ store }));
const manager = create<Player>({ adapter: faulty }, { userData: { persistence: { events: ['shutdown'] } } });
assert.equal(manager.stats().lastFlushMs, null);
const session = await manager.create();
await session.start();
const player = await session.identify('player-1', { defaults: { gold: 0, inventory: [] } });
player.gold += 10;
player.inventory.push('sword');
faulty.failNext(1);
await assert.rejects(session.persistNow());
await session.persistNow();
await manager.persistAllUserData();
assert.equal(typeof manager.stats().lastFlushMs, 'number');
await manager.destroy();
const stored = await new MemoryAdapter({ store }).load('player-1');
assert.deepEqual(stored?.userData, { gold: 10, inventory: ['sword'] });
assert.throws(() => new MemoryAdapter({ batchSize: 0 }), ValidationError);
console.log(`MemoryAdapter session: stored ${JSON.stringify(stored)}`);

// PostgresAdapter over an embedded PGlite.
const { PGlite } = await import('@electric-sql/pglite');
const db = await PGlite.create();
const postgres = new PostgresAdapter({ client: db, table: 'players' });
await postgres.setup();
const [saved] = await postgres.save([{ userId: 'player-1', userData: { gold: 5 }, expectedVersion: 0 }]);
assert.deepEqual(saved, { status: 'ok', version: 1 });
assert.deepEqual(await postgres.load('player-1'), { userData: { gold: 5 }, version: 1 });
await postgres.close();
await db.close();
console.log('PostgresAdapter over PGlite: saved and loaded version 1');

// Injected driver clients of the installed majors are accepted; close() leaves them to their owner.
const { Redis } = await import('ioredis');
const redisClient = new Redis({ lazyConnect: true });
const redis = new RedisAdapter({ client: redisClient, prefix: 'game:' });
assert.equal(redis.client, redisClient);
await redis.close();
assert.equal(redisClient.status, 'wait', 'the adapter left the injected client alone');
redisClient.disconnect();

const { MongoClient } = await import('mongodb');
const mongoClient = new MongoClient('mongodb://127.0.0.1:1/');
const mongo = new MongoAdapter({ client: mongoClient, database: 'game' });
await mongo.close();
await mongoClient.close();
console.log('RedisAdapter and MongoAdapter take injected ioredis and mongodb clients (never connected)');

/**
 * A CommonJS application of the packed packages: TypeScript's `import x = require()` compiles to a plain
 * `const x = require()`, which Node >= 20.19 answers with the packages' ES modules. tools/packed-install
 * copies it into a scratch project that installed the tarballs with npm, compiles it against their
 * declarations and runs it there.
 */
import assert = require('node:assert/strict');
import adapterMongo = require('@cagey-sessions/adapter-mongo');
import adapterPostgres = require('@cagey-sessions/adapter-postgres');
import adapterRedis = require('@cagey-sessions/adapter-redis');
import core = require('@cagey-sessions/core');
import adapterKit = require('@cagey-sessions/core/adapter-kit');
import testing = require('@cagey-sessions/testing');
import pglite = require('@electric-sql/pglite');
import ioredis = require('ioredis');
import mongodb = require('mongodb');

const required: Record<string, object> = {
  '@cagey-sessions/core': core,
  '@cagey-sessions/core/adapter-kit': adapterKit,
  '@cagey-sessions/testing': testing,
  '@cagey-sessions/adapter-postgres': adapterPostgres,
  '@cagey-sessions/adapter-redis': adapterRedis,
  '@cagey-sessions/adapter-mongo': adapterMongo,
};

interface Player {
  gold: number;
  inventory: string[];
}

async function main(): Promise<void> {
  console.log(`CommonJS consumer on Node ${process.versions.node} (${__filename.split('/').pop()})`);
  for (const [name, exports] of Object.entries(required)) {
    const names = Object.keys(exports);
    assert.ok(names.length > 0, `${name} has exports`);
    const shown = names.length > 4 ? `${names.slice(0, 4).join(', ')}, …` : names.join(', ');
    console.log(`require('${name}'): ${names.length} exports (${shown})`);
  }

  // One module instance whichever way it is loaded: errors thrown by one are instances of the other's classes.
  const imported = await import('@cagey-sessions/core');
  assert.equal(core.CageySessionsError, imported.CageySessionsError);
  assert.equal(core.SessionManager, imported.SessionManager);
  console.log("require() and import() of '@cagey-sessions/core' give the same module instance");

  // The conformance suite is import()-able from CommonJS too; it needs vitest, not installed here.
  await assert.rejects(import('@cagey-sessions/testing/conformance'), /'vitest'/);

  // The quick start, in CommonJS.
  const store = new testing.MemoryStore();
  const manager = core.create<Player>(
    { adapter: new testing.MemoryAdapter({ store }) },
    { userData: { persistence: { interval: '30s', events: ['disconnect', 'shutdown'] } } },
  );
  const session = await manager.create('reconnect-token-1');
  await session.start();
  const player = await session.identify('user-42', { defaults: { gold: 0, inventory: [] } });
  player.gold += 10;
  player.inventory.push('sword');
  await session.persistNow();
  await session.destroy();
  await manager.destroy();
  const stored = await new testing.MemoryAdapter({ store }).load('user-42');
  assert.deepEqual(stored, { userData: { gold: 10, inventory: ['sword'] }, version: 1 });
  const { lastFlushMs, written } = manager.stats();
  console.log(
    `MemoryAdapter session: stored ${JSON.stringify(stored)}; stats: written ${written}, lastFlushMs ${lastFlushMs}`,
  );

  // A core error class caught across the CommonJS boundary.
  assert.throws(() => new testing.MemoryAdapter({ batchSize: 0 }), core.ValidationError);

  // PostgresAdapter over PGlite.
  const db = await pglite.PGlite.create();
  const postgres = new adapterPostgres.PostgresAdapter({ client: db, table: 'player_sessions' });
  await postgres.setup();
  const pgManager = core.create<Player>({ adapter: postgres });
  const pgSession = await pgManager.create();
  await pgSession.start();
  const pgPlayer = await pgSession.identify('player-42', { defaults: { gold: 0, inventory: [] } });
  pgPlayer.gold += 100;
  await pgSession.persistNow();
  await pgManager.destroy(true);
  const loaded = await postgres.load('player-42');
  assert.deepEqual(loaded, { userData: { gold: 100, inventory: [] }, version: 1 });
  await postgres.close();
  await db.close();
  console.log(`PostgresAdapter over PGlite: loaded ${JSON.stringify(loaded)}`);

  // Injected clients of the installed driver majors; close() leaves them to their owner.
  const redisClient = new ioredis.Redis({ lazyConnect: true });
  const redis = new adapterRedis.RedisAdapter({ client: redisClient, prefix: 'game:' });
  await redis.close();
  assert.equal(redisClient.status, 'wait');
  redisClient.disconnect();
  const mongoClient = new mongodb.MongoClient('mongodb://127.0.0.1:1/');
  const mongo = new adapterMongo.MongoAdapter({ client: mongoClient, database: 'game' });
  await mongo.close();
  await mongoClient.close();
  console.log(
    'RedisAdapter and MongoAdapter: injected ioredis and mongodb clients accepted, left open by close()',
  );
  console.log('CommonJS consumer: ok');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});

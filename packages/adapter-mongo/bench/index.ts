/**
 * Flushing 10,000 dirty sessions (about 1 KB of user data each) to a MongoDB-compatible server, side by side:
 * - core + MongoAdapter, versions on (every write fenced by the session's version);
 * - (a) the original style: no adapter, a `persistUserData` listener awaiting one `updateOne` upsert per
 *   session, one session after the other as the original library did;
 * - (b) the ceiling: one raw unordered `bulkWrite` of the same writes.
 *
 * Scenario "new players" (the first flush, inserts) runs everywhere. Scenario "returning players" (a flush of
 * existing users, conditional updates) runs only against a real MongoDB (MONGODB_URI): FerretDB 1.x evaluates
 * every update by scanning the collection, so 10,000 updates take tens of minutes there (see the README).
 * Starts its own FerretDB (tools/test-servers) unless MONGODB_URI names a server. Run with `pnpm bench`.
 */
import { type BenchRow, playerData, report, timeMs } from '@cagey-sessions/bench-kit';
import { create, type Session, type SessionManager, type UserData } from '@cagey-sessions/core';
import { type AnyBulkWriteOperation, type Collection, MongoClient } from 'mongodb';
import { MongoAdapter, type UserDocument } from '../src/index.js';

const SESSIONS = 10_000;
const ROUNDS = Number(process.env.CAGEY_BENCH_ROUNDS ?? 3);
/** The whole benchmark gives up after this long. */
const DEADLINE_MS = 20 * 60_000;
const started = Date.now();

function checkDeadline(): void {
  if (Date.now() - started > DEADLINE_MS) throw new Error('benchmark exceeded its 20 minute deadline');
}

async function sessions(manager: SessionManager, versioned: boolean, count = SESSIONS): Promise<Session[]> {
  const list: Session[] = [];
  for (let i = 0; i < count; i++) {
    const session = await manager.create();
    await session.start();
    await session.setUser(i, playerData(i), versioned ? { version: 0 } : {});
    list.push(session);
  }
  return list;
}

function dirty(list: readonly Session[]): void {
  for (const session of list) (session.userData as { gold: number }).gold += 1;
}

/** One measured flush: `prepare` (untimed) builds fresh state, `flush` is timed, `dispose` cleans up. */
interface Contender {
  name: string;
  /** Sessions one flush writes (SESSIONS unless the contender is too slow to run at full size). */
  sessions: number;
  prepare(): Promise<void>;
  flush(): Promise<void>;
  dispose(): Promise<void>;
}

let namespace = 0;
const nextCollection = (db: string, client: MongoClient) =>
  client.db(db).collection<UserDocument>(`bench_${Date.now().toString(36)}_${namespace++}`);

/**
 * A contender that flushes the sessions of the manager `build` sets up over a fresh collection. With
 * `existing`, every user is stored once (untimed) and changed again, so the timed flush rewrites stored users.
 */
function managerContender(
  client: MongoClient,
  db: string,
  existing: boolean,
  contender: { name: string; sessions: number; versioned: boolean },
  build: (collection: Collection<UserDocument>) => Promise<SessionManager>,
): Contender {
  let manager: SessionManager | undefined;
  let collection: Collection<UserDocument> | undefined;
  return {
    name: contender.name,
    sessions: contender.sessions,
    async prepare() {
      collection = nextCollection(db, client);
      manager = await build(collection);
      const list = await sessions(manager, contender.versioned, contender.sessions);
      if (existing) {
        await manager.persistAllUserData();
        dirty(list);
      }
    },
    flush: () => manager!.persistAllUserData(),
    async dispose() {
      await manager!.destroy(false);
      await collection!.drop();
    },
  };
}

function coreWithAdapter(
  client: MongoClient,
  db: string,
  existing: boolean,
  adapterOptions: { maxUpdatesPerBulkWrite?: number },
): Contender {
  const contender = {
    name: 'core + MongoAdapter (batch 1000, versions on)',
    sessions: SESSIONS,
    versioned: true,
  };
  return managerContender(client, db, existing, contender, async (collection) => {
    const adapter = new MongoAdapter({
      client,
      database: db,
      collection: collection.collectionName,
      ...adapterOptions,
    });
    await adapter.setup();
    return create({ adapter }, { userData: { persistence: { interval: '1h' } } });
  });
}

/**
 * The original style: each session's `persistUserData` listener awaits its own write, one session after the
 * other (batches of one, no concurrency), as the original library's persistAllUserData did. `write` is the
 * issue's `updateOne` upsert, or (a′) a plain `insertOne` that isolates the cost of one round trip per session.
 */
function originalStyle(
  client: MongoClient,
  db: string,
  existing: boolean,
  options: { name: string; sessions: number; insert?: boolean },
): Contender {
  const contender = { name: options.name, sessions: options.sessions, versioned: false };
  return managerContender(client, db, existing, contender, async (collection) => {
    const manager = create(
      {},
      { userData: { persistence: { interval: '1h', batchSize: 1, concurrency: 1 } } },
    );
    manager.on('persistUserData', async (session) => {
      if (options.insert) {
        await collection.insertOne({
          _id: String(session.userId),
          data: session.userData,
          version: 1,
          updatedAt: new Date(),
        });
        return;
      }
      await collection.updateOne(
        { _id: String(session.userId) },
        { $set: { data: session.userData, updatedAt: new Date() }, $inc: { version: 1 } },
        { upsert: true },
      );
    });
    return manager;
  });
}

/** The same writes the adapter sends, built from the same data, in one unordered bulkWrite. */
function ceiling(client: MongoClient, db: string, existing: boolean): Contender {
  let collection: Collection<UserDocument> | undefined;
  let data: UserData[] = [];
  return {
    name: '(b) ceiling: one raw unordered bulkWrite of the same writes',
    sessions: SESSIONS,
    async prepare() {
      collection = nextCollection(db, client);
      data = Array.from({ length: SESSIONS }, (_, i) => playerData(i));
      if (existing) {
        const updatedAt = new Date();
        await collection.insertMany(
          data.map((d, i) => ({ _id: String(i), data: d, version: 1, updatedAt, writeId: 'w' })),
        );
        for (const d of data) (d as { gold: number }).gold += 1;
      }
    },
    async flush() {
      const updatedAt = new Date();
      const operations: AnyBulkWriteOperation<UserDocument>[] = data.map((d, i) =>
        existing
          ? {
              updateOne: {
                filter: { _id: String(i), version: 1, deleted: { $ne: true } },
                update: { $set: { data: d, version: 2, updatedAt, writeId: `w${i}` } },
              },
            }
          : { insertOne: { document: { _id: String(i), data: d, version: 1, updatedAt, writeId: `w${i}` } } },
      );
      await collection!.bulkWrite(operations, { ordered: false });
    },
    async dispose() {
      await collection!.drop();
    },
  };
}

async function measure(contender: Contender): Promise<number> {
  checkDeadline();
  await contender.prepare();
  try {
    return await timeMs(() => contender.flush());
  } finally {
    await contender.dispose();
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function scenario(
  title: string,
  contenders: { ours: Contender; original: Contender; bulk: Contender; extra?: Contender },
): Promise<BenchRow[]> {
  const { ours, original, bulk, extra } = contenders;
  const all = [ours, bulk, original, ...(extra ? [extra] : [])];
  const times = new Map<Contender, number[]>(all.map((c) => [c, []]));
  // Interleaved rounds, rotating the order so no contender always follows the same neighbour.
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < all.length; k++) {
      const contender = all[(round + k) % all.length]!;
      const ms = await measure(contender);
      times.get(contender)!.push(ms);
      console.log(`  ${title} round ${round + 1}: ${contender.name}: ${Math.round(ms)} ms`);
    }
  }
  /** Time for SESSIONS sessions; a contender run on fewer is scaled up (a lower bound, see `original`). */
  const full = (c: Contender) => (median(times.get(c)!) * SESSIONS) / c.sessions;
  const oursMs = full(ours);
  const row = (c: Contender, note: string): BenchRow => {
    const measured = median(times.get(c)!);
    const rate = `${Math.round((c.sessions / measured) * 1000).toLocaleString('en-US')} sessions/s`;
    const scaled =
      c.sessions === SESSIONS
        ? ''
        : `; measured ${Math.round(measured).toLocaleString('en-US')} ms for ${c.sessions.toLocaleString('en-US')} ` +
          'sessions, shown ×10 (a lower bound: each upsert gets slower as the collection grows)';
    return {
      name: `${title}: flush ${SESSIONS.toLocaleString('en-US')} dirty sessions: ${c.name}`,
      value: full(c),
      unit: 'ms',
      note: `${rate}; median of ${times.get(c)!.length}${scaled}${note}`,
    };
  };
  const atLeast = original.sessions === SESSIONS ? '' : '≥ ';
  const rows = [
    row(
      ours,
      `; ${atLeast}${(full(original) / oursMs).toFixed(1)}x faster than (a) (target ≥ 20x)` +
        (extra ? `; ${(full(extra) / oursMs).toFixed(1)}x faster than (a′)` : '') +
        `; ${(oursMs / full(bulk)).toFixed(2)}x the time of (b) (target ≤ 1.3x)`,
    ),
    row(original, ''),
    row(bulk, ''),
  ];
  if (extra) rows.push(row(extra, ''));
  return rows;
}

async function main() {
  const givenUrl = process.env.MONGODB_URI;
  const server =
    givenUrl === undefined ? await (await import('@cagey-sessions/test-servers')).startFerretDB() : undefined;
  const url = givenUrl ?? server!.url;
  const client = new MongoClient(url, { maxPoolSize: 20 });
  const db = `cagey_bench_${Date.now().toString(36)}`;
  try {
    const info = await client.db('admin').command({ buildInfo: 1 });
    const ferretdb = typeof info.ferretdbVersion === 'string' || givenUrl === undefined;
    const adapterOptions = ferretdb ? { maxUpdatesPerBulkWrite: 50 } : {};
    const rows: BenchRow[] = [];
    console.log(`server: ${ferretdb ? `FerretDB ${info.ferretdbVersion ?? ''}` : `MongoDB ${info.version}`}`);
    // FerretDB makes each upsert scan the collection, so (a) at full size takes most of an hour there: it runs
    // on the first 1,000 sessions, and (a′) shows the cost of one round trip per session at full size.
    const originalSessions = ferretdb ? SESSIONS / 10 : SESSIONS;
    rows.push(
      ...(await scenario('new players', {
        ours: coreWithAdapter(client, db, false, adapterOptions),
        original: originalStyle(client, db, false, {
          name: '(a) original style: one awaited updateOne upsert per session',
          sessions: originalSessions,
        }),
        bulk: ceiling(client, db, false),
        extra: originalStyle(client, db, false, {
          name: '(a′) one awaited insertOne per session',
          sessions: SESSIONS,
          insert: true,
        }),
      })),
    );
    if (ferretdb) {
      rows.push({
        name: 'returning players (conditional updates of existing users)',
        value: Number.NaN,
        unit: '',
        note: 'not measured on FerretDB 1.x (each update scans the collection); set MONGODB_URI to a MongoDB',
      });
    } else {
      rows.push(
        ...(await scenario('returning players', {
          ours: coreWithAdapter(client, db, true, adapterOptions),
          original: originalStyle(client, db, true, {
            name: '(a) original style: one awaited updateOne upsert per session',
            sessions: SESSIONS,
          }),
          bulk: ceiling(client, db, true),
        })),
      );
    }
    report('adapter-mongo', rows, {
      sessions: SESSIONS,
      rounds: ROUNDS,
      bytesPerSession: JSON.stringify(playerData(SESSIONS)).length,
      server: ferretdb
        ? `FerretDB ${info.ferretdbVersion ?? '(version not reported)'}, SQLite backend, ephemeral (tools/test-servers)`
        : `MongoDB ${info.version} (MONGODB_URI)`,
    });
  } finally {
    await client
      .db(db)
      .dropDatabase()
      .catch(() => undefined);
    await client.close();
    await server?.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});

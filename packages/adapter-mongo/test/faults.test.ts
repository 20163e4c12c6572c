import type { SaveRecord, SaveResult } from '@cagey-sessions/core';
import type { MongoClient } from 'mongodb';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MongoAdapter, type UserDocument } from '../src/index.js';
import { newClient, randomDatabase, randomName, serverOptions, serverUrl } from './helpers.js';
import { type Command, WireProxy } from './wire-proxy.js';

const url = serverUrl('adapter-mongo: connection faults in the middle of a bulkWrite');
/** The proxy needs one host to stand in front of: a plain `mongodb://` URL (not `mongodb+srv://`). */
const target = url === null ? undefined : hostOf(url);
if (url !== null && target === undefined) {
  console.warn(
    `\n!!! adapter-mongo fault tests SKIPPED: cannot put a proxy in front of ${url.split('@').pop()}\n`,
  );
}
const database = randomDatabase();
const PLAYERS = 3_000;

function hostOf(url: string): { host: string; port: number } | undefined {
  const match = /^mongodb:\/\/(?:[^@/?]*@)?([^,/?:]+)(?::(\d+))?(?:[/?]|$)/.exec(url);
  if (match === null) return undefined;
  return { host: match[1]!, port: match[2] === undefined ? 27017 : Number(match[2]) };
}

function isWriteTo(collection: string, name: 'insert' | 'update') {
  return (command: Command) => command.name === name && command.target === collection;
}

function newPlayers(prefix: string, n = PLAYERS): SaveRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    userId: `${prefix}-${i}`,
    userData: { i, gold: 100, bag: ['sword', 'shield'], name: `player ${i}` },
    expectedVersion: 0,
    writeId: `${prefix}.w${i}`,
  }));
}

function statuses(results: SaveResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const result of results) counts[result.status] = (counts[result.status] ?? 0) + 1;
  return counts;
}

describe.skipIf(target === undefined)('MongoAdapter when the connection fails inside a bulkWrite', () => {
  let proxy: WireProxy;
  let raw: MongoClient;
  let adapter: MongoAdapter;
  let collection: string;

  beforeAll(async () => {
    proxy = await WireProxy.start(target!);
    raw = newClient(url!);
  });

  afterAll(async () => {
    await raw?.db(database).dropDatabase();
    await raw?.close();
    await proxy?.close();
  });

  beforeEach(async () => {
    proxy.down = false;
    proxy.onCommand = () => 'forward';
    proxy.onReply = undefined;
    collection = randomName();
    adapter = new MongoAdapter({
      url: proxy.urlFor(url!),
      // A write cut off here is not retried by the driver (FerretDB and standalone servers never do anyway).
      clientOptions: { retryWrites: false },
      connectTimeout: '1500ms',
      database,
      collection,
      ...serverOptions(),
    });
    await adapter.setup();
  });

  afterEach(async () => {
    proxy.down = false;
    await adapter.close();
  });

  function stored() {
    return raw.db(database).collection<UserDocument>(collection);
  }

  /** Every record reported written is stored with its own write id and the version it was reported with. */
  async function expectOkIsStored(records: SaveRecord[], results: SaveResult[]): Promise<void> {
    const documents = await stored()
      .find({}, { projection: { version: 1, writeId: 1 } })
      .toArray();
    const byId = new Map(documents.map((document) => [document._id, document]));
    for (let i = 0; i < records.length; i++) {
      const result = results[i]!;
      if (result.status !== 'ok') continue;
      const document = byId.get(String(records[i]!.userId));
      expect(document, `record ${i} was reported written`).toMatchObject({
        version: result.version,
        writeId: records[i]!.writeId,
      });
    }
  }

  it(`${PLAYERS} new players whose insert command is cut before the server gets it, server gone: none is reported written, each gets an error result`, async () => {
    const records = newPlayers('gone');
    proxy.once(isWriteTo(collection, 'insert'), 'cut', () => {
      proxy.down = true;
    });
    const results = await adapter.save(records);
    expect(await stored().countDocuments()).toBe(0);
    expect(statuses(results)).toEqual({ error: PLAYERS });
    const error = (results[0] as { error: Error }).error;
    expect(error).toMatchObject({ code: 'ADAPTER_ERROR', adapter: 'mongo' });
    expect(error.message).toMatch(/outcome is unknown/);

    // Once the server is back, the same players are written.
    proxy.down = false;
    const again = await adapter.save(newPlayers('gone'));
    expect(statuses(again)).toEqual({ ok: PLAYERS });
    expect(await stored().countDocuments()).toBe(PLAYERS);
  });

  it(`${PLAYERS} new players whose insert command is cut, server still there: they are read back, sent again and reported with what is stored`, async () => {
    const records = newPlayers('cut');
    proxy.once(isWriteTo(collection, 'insert'), 'cut');
    const results = await adapter.save(records);
    expect(statuses(results)).toEqual({ ok: PLAYERS });
    expect(results.every((result) => result.status === 'ok' && result.version === 1)).toBe(true);
    expect(await stored().countDocuments()).toBe(PLAYERS);
    await expectOkIsStored(records, results);
    expect(proxy.commands.filter(isWriteTo(collection, 'insert')), 'sent, cut, sent again').toHaveLength(2);
  });

  it(`${PLAYERS} new players stored by the server whose answer is lost: the read finds their write ids and reports them written, without writing again`, async () => {
    const records = newPlayers('lost');
    proxy.once(isWriteTo(collection, 'insert'), 'lose-reply');
    const results = await adapter.save(records);
    expect(statuses(results)).toEqual({ ok: PLAYERS });
    await expectOkIsStored(records, results);
    expect(proxy.commands.filter(isWriteTo(collection, 'insert'))).toHaveLength(1);
  });

  it('new players stored by the server whose answer is lost, server gone before the read: error results, not ok', async () => {
    const records = newPlayers('lostgone', 500);
    proxy.once(isWriteTo(collection, 'insert'), 'lose-reply', () => {
      proxy.down = true;
    });
    const results = await adapter.save(records);
    expect(statuses(results)).toEqual({ error: 500 });
    // They are stored: a later conflict names their write id, so core can recognise its own write.
    proxy.down = false;
    const retry = await adapter.save(
      records.map((record) => ({ ...record, writeId: `${record.writeId}.2` })),
    );
    expect(retry[7]).toEqual({ status: 'conflict', currentVersion: 1, currentWriteId: 'lostgone.w7' });
  });

  it('a batch of returning and new players whose update command is cut, server gone: the confirmed inserts are ok, the updates are errors', async () => {
    const returning = newPlayers('back', 20);
    expect(statuses(await adapter.save(returning))).toEqual({ ok: 20 });
    const records: SaveRecord[] = [
      ...returning.map((record, i) => ({
        ...record,
        userData: { round: 2 },
        expectedVersion: 1,
        writeId: `b2.${i}`,
      })),
      ...newPlayers('fresh', 20),
    ];
    proxy.once(isWriteTo(collection, 'update'), 'cut', () => {
      proxy.down = true;
    });
    const results = await adapter.save(records);
    expect(statuses(results.slice(0, 20))).toEqual({ error: 20 });
    expect(statuses(results.slice(20))).toEqual({ ok: 20 });
    await expectOkIsStored(records, results);
    expect(await stored().countDocuments({ version: 2 })).toBe(0);
  });

  it('a batch of returning and new players whose insert command is cut: the updates the driver never sent are not reported written', async () => {
    const returning = newPlayers('again', 20);
    expect(statuses(await adapter.save(returning))).toEqual({ ok: 20 });
    const records: SaveRecord[] = [
      ...newPlayers('first', 20),
      ...returning.map((record, i) => ({
        ...record,
        userData: { round: 2 },
        expectedVersion: 1,
        writeId: `a2.${i}`,
      })),
    ];
    proxy.once(isWriteTo(collection, 'insert'), 'cut', () => {
      proxy.down = true;
    });
    const results = await adapter.save(records);
    expect(results.filter((result) => result.status === 'ok')).toEqual([]);
    expect(await stored().countDocuments()).toBe(20);
    proxy.down = false;
    // Sent again when reachable: everything is written once, with the versions it was sent for.
    const again = await adapter.save(records);
    expect(statuses(again)).toEqual({ ok: 40 });
    await expectOkIsStored(records, again);
    expect(again.slice(20).every((result) => result.status === 'ok' && result.version === 2)).toBe(true);
  });

  it('a write concern error in the answer makes the writes unknown: read back when the server answers, errors when it does not', async () => {
    const inserted = newPlayers('wc', 50);
    proxy.onReply = (command, reply) =>
      isWriteTo(collection, 'insert')(command)
        ? { ...reply, writeConcernError: { code: 64, errmsg: 'waiting for replication timed out' } }
        : undefined;
    const results = await adapter.save(inserted);
    expect(statuses(results)).toEqual({ ok: 50 });
    await expectOkIsStored(inserted, results);

    const more = newPlayers('wcgone', 50);
    proxy.onReply = (command, reply) => {
      if (!isWriteTo(collection, 'insert')(command)) return undefined;
      proxy.down = true;
      return { ...reply, writeConcernError: { code: 64, errmsg: 'waiting for replication timed out' } };
    };
    const unconfirmed = await adapter.save(more);
    expect(statuses(unconfirmed)).toEqual({ error: 50 });
  });
});

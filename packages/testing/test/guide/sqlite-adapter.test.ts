import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AdapterError, ValidationError } from '@cagey-sessions/core';
import initSqlJs, { type Database } from 'sql.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteAdapter } from './sqlite-adapter.js';

let database: Database;

beforeEach(async () => {
  const SQL = await initSqlJs();
  database = new SQL.Database();
});

afterEach(() => {
  database.close();
});

describe('options', () => {
  const invalid = (options: unknown, message: RegExp) => {
    let error: unknown;
    try {
      new SqliteAdapter(options as never);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'INVALID_OPTIONS' });
    expect((error as Error).message).toMatch(message);
  };

  it('refuses a misspelt option, naming the nearest known one', () => {
    invalid({ client: database, tabel: 'players' }, /unknown option "tabel"\. Did you mean table\?/);
  });

  it('takes exactly one of client and url, and only file:// URLs', () => {
    invalid({}, /pass client \(a sql\.js Database\) or url/);
    invalid({ client: database, url: 'file:///tmp/x.sqlite' }, /either client .* or url, not both/);
    invalid({ url: 'postgres://user:secret@db/game' }, /must start with file:\/\//);
    invalid({ url: 'file://server/share/x.sqlite' }, /must name a local file/);
    invalid({ client: { query() {} } }, /client must be a sql\.js Database/);
  });

  it('checks the table name and the batch size', () => {
    invalid({ client: database, table: 'players; DROP TABLE x' }, /Invalid table name/);
    invalid({ client: database, batchSize: 0 }, /batchSize must be a positive integer \(got 0\)/);
    expect(new SqliteAdapter({ client: database }).maxBatchSize).toBe(200);
    expect(new SqliteAdapter({ client: database, table: 'players' }).table).toBe('"players"');
  });

  it('never repeats a URL in a message: it may hold a password', () => {
    invalid({ url: 'https://user:hunter2@example.com/db' }, /^(?!.*hunter2)/);
  });
});

describe('a database the adapter opens from a file:// URL', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cagey-sqlite-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts empty, is written to the file by close(), and is there for the next adapter', async () => {
    const url = pathToFileURL(join(dir, 'players.sqlite')).href;
    const first = new SqliteAdapter({ url });
    await first.setup();
    expect(await first.load('hero')).toBeUndefined();
    expect(await first.save([{ userId: 'hero', userData: { gold: 7 }, writeId: 'w1' }])).toEqual([
      { status: 'ok', version: 1 },
    ]);
    await first.close();
    expect(await readdir(dir)).toEqual(['players.sqlite']);

    const second = new SqliteAdapter({ url });
    expect(await second.load('hero')).toEqual({ userData: { gold: 7 }, version: 1 });
    await second.close();
  });

  it('close() of an adapter that never opened its database writes nothing', async () => {
    const adapter = new SqliteAdapter({ url: pathToFileURL(join(dir, 'unused.sqlite')).href });
    await adapter.close();
    expect(await readdir(dir)).toEqual([]);
    await expect(adapter.load('hero')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
  });

  it('a file that is not a database fails calls with an AdapterError', async () => {
    const path = join(dir, 'not-a-database.sqlite');
    await writeFile(path, 'plain text, not SQLite. '.repeat(20));
    const adapter = new SqliteAdapter({ url: pathToFileURL(path).href });
    const error = await adapter.load('hero').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AdapterError);
    expect((error as Error).message).toMatch(/^\[sqlite\] load failed: file is not a database/);
    await adapter.close().catch(() => {});
  });
});

describe('what the conformance suite cannot show with this store', () => {
  it('a value the store refuses fails only its own record', async () => {
    const adapter = new SqliteAdapter({ client: database, table: 'players' });
    await adapter.setup();
    // The adapter's own table accepts every JSON value; an operator's trigger is one way SQLite refuses one.
    database.run(`CREATE TRIGGER no_cheats BEFORE INSERT ON players WHEN NEW.data LIKE '%"cheat"%'
      BEGIN SELECT RAISE(ABORT, 'cheating is not stored'); END`);
    const results = await adapter.save([
      { userId: 'a', userData: { n: 1 } },
      { userId: 'b', userData: { cheat: true } },
      { userId: 'c', userData: { n: 3 } },
    ]);
    expect(results[0]).toEqual({ status: 'ok', version: 1 });
    expect(results[1]).toMatchObject({ status: 'error', error: { code: 'ADAPTER_ERROR' } });
    expect((results[1] as { error: Error }).error.message).toBe(
      '[sqlite] save failed: cheating is not stored',
    );
    expect(results[2]).toEqual({ status: 'ok', version: 1 });
    expect(await adapter.load('b')).toBeUndefined();
    expect(await adapter.load('c')).toEqual({ userData: { n: 3 }, version: 1 });
  });

  it('any other failure rolls the batch back: the batch rejects and nothing of it is stored', async () => {
    const adapter = new SqliteAdapter({ client: database, table: 'players' });
    await adapter.setup();
    database.create_function('fail_hard', () => {
      throw new Error('the disk is on fire');
    });
    database.run(`CREATE TRIGGER on_fire BEFORE INSERT ON players WHEN NEW.user_id = 'boom'
      BEGIN SELECT fail_hard(); END`);
    const saving = adapter.save([
      { userId: 'a', userData: { n: 1 } },
      { userId: 'boom', userData: { n: 2 } },
    ]);
    await expect(saving).rejects.toThrow(/^\[sqlite\] save failed: .*the disk is on fire/);
    expect(await adapter.load('a')).toBeUndefined();
    expect(await adapter.save([{ userId: 'a', userData: { n: 1 } }])).toEqual([{ status: 'ok', version: 1 }]);
  });

  it('without setup(), calls fail with an AdapterError naming the missing table', async () => {
    const adapter = new SqliteAdapter({ client: database, table: 'never_created' });
    await expect(adapter.load('hero')).rejects.toThrow('[sqlite] load failed: no such table: never_created');
    await expect(adapter.save([{ userId: 'hero', userData: {} }])).rejects.toBeInstanceOf(AdapterError);
  });
});

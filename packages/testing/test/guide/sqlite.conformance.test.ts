import { userKey } from '@cagey-sessions/core/adapter-kit';
import { runAdapterConformance } from '@cagey-sessions/testing/conformance';
import initSqlJs, { type Database } from 'sql.js';
import { SqliteAdapter } from './sqlite-adapter.js';

/** One in-memory database for the whole suite; each test works in a table of its own (its namespace). */
let database: Database;

runAdapterConformance<SqliteAdapter>({
  name: 'sqlite (sql.js, the guide adapter)',
  beforeAll: async () => {
    const SQL = await initSqlJs();
    database = new SQL.Database();
  },
  afterAll: async () => {
    database.close();
  },
  // Two adapters over one Database are two "processes" over one store: they see each other's writes and race
  // on versions.
  createAdapter: ({ namespace }) => new SqliteAdapter({ client: database, table: namespace }),
  // What the table really holds, read with SQL, not through the adapter under test.
  inspect: async ({ namespace }, userId) => {
    const row = database.exec(
      `SELECT data, version FROM "${namespace}" WHERE user_id = ? AND data IS NOT NULL`,
      [userKey(userId)],
    )[0]?.values[0];
    return row === undefined
      ? undefined
      : { userData: JSON.parse(row[0] as string), version: Number(row[1]) };
  },
  // An adapter over a database the test owns: after adapter.close() the database must still answer.
  injectedClient: async ({ namespace }) => ({
    adapter: new SqliteAdapter({ client: database, table: namespace }),
    clientWorks: async () => database.exec('SELECT 1')[0]?.values[0]?.[0] === 1,
    dispose: async () => {}, // the suite's database stays open for the other tests
  }),
  // No capabilities.rejectedUserData: the table stores any JSON text, so there is no such value to declare
  // (the suite says so in a notice). sqlite-adapter.test.ts covers a refused value with a trigger instead.
});

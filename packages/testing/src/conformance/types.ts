import type { PersistenceAdapter, UserId } from '@cagey-sessions/core';

/** The groups of the conformance suite, in the order they run. */
export const conformanceGroups = [
  'load',
  'roundTrip',
  'versions',
  'isolation',
  'batches',
  'delete',
  'concurrency',
  'ids',
  'scan',
  'restore',
  'lifecycle',
] as const;

export type ConformanceGroup = (typeof conformanceGroups)[number];

/** Names the store area one test works in. */
export interface ConformanceContext {
  /** A table, collection or key prefix name: matches /^[a-z][a-z0-9_]{0,30}$/, random per test. */
  namespace: string;
}

/** What `inspect` reports: the store's own view of a user. */
export interface InspectedUser {
  userData: unknown;
  version: number;
}

/** An adapter over a client the test owns, and a probe that the client still works. */
export interface InjectedClient<A extends PersistenceAdapter = PersistenceAdapter> {
  adapter: A;
  clientWorks(): Promise<boolean>;
  dispose(): Promise<void>;
}

export interface ConformanceCapabilities {
  /** A userData value this store refuses although it is valid JSON (e.g. PostgreSQL jsonb refuses "\u0000"). */
  rejectedUserData?: object;
  /** Largest batch to test (default adapter.maxBatchSize ?? 1000); the suite tests 1, size-1, size, size+1. */
  batchSize?: number;
  /**
   * How often `scan` returns a user live for the whole listing: `'exactlyOnce'` (default) or `'atLeastOnce'`
   * (Redis `SCAN` may return a key twice; duplicates are then allowed, a missing user still fails).
   */
  scanDelivery?: 'exactlyOnce' | 'atLeastOnce';
  /**
   * Users the large scan check writes and lists (default 10,000). Lower it only for a stand-in server too slow
   * for that (each check has `testTimeout`); the check then notes that it listed fewer.
   */
  scanUsers?: number;
}

export interface ConformanceOptions<A extends PersistenceAdapter = PersistenceAdapter> {
  /** Suite title, e.g. 'postgres (server)'. */
  name: string;
  /** Runs once before the suite, e.g. to start or connect to a server. */
  beforeAll?(): Promise<void>;
  /** Runs once after the suite; `namespaces` lists every namespace the suite used, for cleanup. */
  afterAll?(info: { namespaces: readonly string[] }): Promise<void>;
  /**
   * A fresh adapter over the store area named by ctx.namespace (a table, collection or key prefix). Two calls
   * with the same namespace give two adapters (two "processes") over the same data. The suite calls setup()
   * itself when the adapter has it. namespace matches /^[a-z][a-z0-9_]{0,30}$/ and is random per test.
   */
  createAdapter(ctx: ConformanceContext): A | Promise<A>;
  /** Disposes of an adapter the suite created, possibly already closed by a test. Default: `adapter.close()`. */
  destroyAdapter?(adapter: A, ctx: ConformanceContext): Promise<void>;
  /** Reads what the store really holds, not through the adapter under test. undefined for missing/tombstone. */
  inspect?(ctx: ConformanceContext, userId: UserId): Promise<InspectedUser | undefined>;
  /** An adapter over an injected, caller-owned client, plus a probe that the client still works. */
  injectedClient?(ctx: ConformanceContext): Promise<InjectedClient<A>>;
  capabilities?: ConformanceCapabilities;
  /** Run only these groups. */
  only?: readonly ConformanceGroup[];
  /** Skip these groups (each skipped group is still reported by a passing, warning test). */
  skip?: readonly ConformanceGroup[];
  /** Timeout of each test in ms. Default 60 000 (batches of 1001 records against a remote server take a while). */
  testTimeout?: number;
}

/** The outcome of one check run by `checkConformance`. */
export interface CheckOutcome {
  group: ConformanceGroup;
  name: string;
  /** Set when the check failed. */
  error?: unknown;
  /** What the check could not cover because a capability is missing. */
  notes: string[];
  /**
   * Set when the check did not run because the adapter lacks the optional method it is about (`scan`,
   * `restore`): says so. `checkConformance` lists it under `notices`, not under `passed` or `failed`.
   */
  uncovered?: string;
}

export interface ConformanceReport {
  passed: CheckOutcome[];
  failed: CheckOutcome[];
  /**
   * Capabilities the options did not declare, optional methods the adapter lacks and groups left out by
   * `only`/`skip`: what was not covered.
   */
  notices: string[];
}

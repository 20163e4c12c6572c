import { randomBytes } from 'node:crypto';
import { MongoClient, type MongoClientOptions } from 'mongodb';
import { inject } from 'vitest';

/**
 * The server's URL, or null with a loud warning (a plain skip would hide that nothing ran). The global setup
 * already fails the run when CI=true and no server could be started.
 */
export function serverUrl(what: string): string | null {
  const url = inject('mongoUrl');
  if (url === null) {
    console.warn(
      `\n!!! ${what}: SKIPPED, no MongoDB-compatible server. Build FerretDB with ` +
        '`bash tools/test-servers/build-ferretdb.sh` or set MONGODB_URI.\n',
    );
  }
  return url;
}

/** True when the run's server is the FerretDB the global setup started (not a MONGODB_URI server). */
export function onFerretDB(): boolean {
  return inject('mongoServer') === 'ferretdb';
}

/** FerretDB 1.x stalls on an update command of about 100 statements or more (see the README). */
export const FERRETDB_UPDATES_PER_BULK_WRITE = 50;

/** Adapter options that the run's server needs. */
export function serverOptions(): { maxUpdatesPerBulkWrite?: number } {
  return onFerretDB() ? { maxUpdatesPerBulkWrite: FERRETDB_UPDATES_PER_BULK_WRITE } : {};
}

export function newClient(url: string, options: MongoClientOptions = {}): MongoClient {
  return new MongoClient(url, { serverSelectionTimeoutMS: 10_000, ...options });
}

export function randomName(prefix = 'am'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** A database name per test file, so runs and files never collide. */
export function randomDatabase(): string {
  return randomName('cagey_test');
}

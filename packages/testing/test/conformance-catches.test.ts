/**
 * The suite is only worth something if it fails broken adapters. Each defect below breaks one rule of the
 * contract; running the affected group directly (checkConformance) must report exactly the checks that rule
 * covers, while the same adapter without the defect passes the whole suite.
 */

import type { SaveRecord, UserId } from '@cagey-sessions/core';
import { describe, expect, it } from 'vitest';
import {
  type CheckOutcome,
  type ConformanceGroup,
  checkConformance,
  conformanceChecks,
  conformanceGroups,
} from '../src/conformance/index.js';
import { MemoryStore } from '../src/index.js';
import { type Flaw, type FlawedAdapter, VersionIgnoringAdapter } from './fixtures/flawed-adapter.js';
import { flawedOptions } from './fixtures/options.js';

const names = (outcomes: CheckOutcome[]) => outcomes.map((o) => o.name).sort();

function checkNamed(group: ConformanceGroup, start: string): string {
  const matches = conformanceChecks[group].filter((check) => check.name.startsWith(start));
  if (matches.length !== 1) throw new Error(`expected one ${group} check starting with "${start}"`);
  return matches[0]!.name;
}

describe('a correct adapter', () => {
  it('passes every check with every capability declared, and nothing is reported as uncovered', async () => {
    const report = await checkConformance(flawedOptions());
    expect(report.failed.map((o) => `${o.name}: ${String(o.error)}`)).toEqual([]);
    const total = conformanceGroups.reduce((sum, group) => sum + conformanceChecks[group].length, 0);
    expect(report.passed).toHaveLength(total);
    expect(report.notices).toEqual([]);
    expect(report.passed.flatMap((o) => o.notes)).toEqual([]);
  });
});

describe('VersionIgnoringAdapter (MemoryAdapter that drops expectedVersion)', () => {
  it('fails the versions group on every rule a conditional write enforces', async () => {
    const stores = new Map<string, MemoryStore>();
    const storeFor = (ns: string) => stores.get(ns) ?? stores.set(ns, new MemoryStore()).get(ns)!;
    const report = await checkConformance({
      name: 'version-ignoring',
      createAdapter: ({ namespace }) => new VersionIgnoringAdapter({ store: storeFor(namespace) }),
      inspect: async ({ namespace }, userId) => storeFor(namespace).peek(userId),
      only: ['versions'],
    });
    expect(names(report.failed)).toEqual(
      [
        checkNamed('versions', 'expectedVersion 0 on a live user'),
        checkNamed('versions', 'a stale expectedVersion'),
        checkNamed('versions', 'an expectedVersion ahead'),
        checkNamed('versions', 'expectedVersion n on a missing user'),
        checkNamed('versions', 'a conflict reports the write id'),
        checkNamed('versions', 'a record written without a write id'),
        checkNamed('versions', 'every stored state and expectedVersion'),
      ].sort(),
    );
    // The rules an unconditional write happens to satisfy still pass: the failures are about versions only.
    expect(names(report.passed)).toContain(checkNamed('versions', 'expectedVersion 0 inserts'));
    for (const outcome of report.failed) expect(outcome.error).toBeInstanceOf(Error);
  });
});

const defects: { flaw: Flaw; group: ConformanceGroup; failing: string[] }[] = [
  {
    flaw: 'noTombstones',
    group: 'delete',
    failing: [
      'versions are not reused',
      'an unconditional write after delete',
      'a writer holding a pre-delete',
    ],
  },
  {
    flaw: 'sharedReferences',
    group: 'roundTrip',
    failing: ['loaded data is a copy', "a record's precomputed json", 'JSON semantics'],
  },
  {
    flaw: 'racyWrites',
    group: 'concurrency',
    failing: [
      'two processes writing one user',
      'two processes inserting',
      '20 concurrent',
      'concurrent batches',
    ],
  },
  {
    flaw: 'wholeBatchFails',
    group: 'isolation',
    failing: [
      'invalid userData in the middle',
      'an invalid userId in the middle',
      'an invalid expectedVersion',
      'results come back in input order',
    ],
  },
  {
    flaw: 'sortedResults',
    group: 'isolation',
    failing: ['results come back in input order', 'conflicts in the middle', 'a value the store refuses'],
  },
  {
    flaw: 'conflictFailsBatch',
    group: 'isolation',
    failing: ['conflicts in the middle', 'results come back'],
  },
  { flaw: 'refusalFailsBatch', group: 'isolation', failing: ['a value the store refuses'] },
  { flaw: 'duplicatesWritten', group: 'batches', failing: ['the same user twice'] },
  { flaw: 'numericIdsDistinct', group: 'ids', failing: ['an integer id and its decimal string'] },
  {
    flaw: 'writeIdsIgnored',
    group: 'versions',
    failing: [
      'a conflict reports the write id',
      'through core: a write that committed but lost',
      'every stored state and expectedVersion',
    ],
  },
  { flaw: 'lossyKeys', group: 'roundTrip', failing: ['keys:'] },
  { flaw: 'namespaceIgnored', group: 'load', failing: ['namespaces are disjoint'] },
  { flaw: 'batchLimit', group: 'batches', failing: ['a batch of batchSize + 1'] },
  { flaw: 'throwsSync', group: 'load', failing: ['load rejects invalid userIds'] },
  { flaw: 'deleteConflictIsFalse', group: 'delete', failing: ['delete with a wrong expectedVersion'] },
  {
    flaw: 'closeIgnored',
    group: 'lifecycle',
    failing: ['close() twice resolves', 'an injected client stays open'],
  },
  { flaw: 'closesInjectedClient', group: 'lifecycle', failing: ['an injected client stays open'] },
  {
    flaw: 'scanRepeats',
    group: 'scan',
    failing: ['10,000 users', 'small pages', 'writes and deletes between pages'],
  },
  {
    flaw: 'scanSkips',
    group: 'scan',
    failing: ['10,000 users', 'small pages', 'writes and deletes between pages'],
  },
  {
    flaw: 'scanListsTombstones',
    group: 'scan',
    failing: ['an empty store, and one holding only deleted users', 'writes and deletes between pages'],
  },
  {
    flaw: 'restoreOverwritesNewer',
    group: 'restore',
    failing: [
      'an equal or newer live version',
      'a tombstone of an equal or higher version',
      'every stored state and restored version',
      'a batch of 3,000 records',
      'the write id is stored',
    ],
  },
  {
    // Every adapter the suite opens runs setup(), so a second process over the same table fails too.
    flaw: 'setupNotIdempotent',
    group: 'lifecycle',
    failing: ['setup() is idempotent', 'close() twice resolves', 'closing one process', 'an injected client'],
  },
];

describe.each(defects)('an adapter with the defect $flaw', ({ flaw, group, failing }) => {
  it(`fails exactly the ${group} checks that cover it`, async () => {
    const report = await checkConformance({ ...flawedOptions([flaw]), only: [group] });
    expect(names(report.failed)).toEqual(failing.map((start) => checkNamed(group, start)).sort());
    expect(report.passed.length + report.failed.length).toBe(conformanceChecks[group].length);
  });
});

describe('scanDelivery: atLeastOnce', () => {
  it('lets a user be listed twice, but still fails a listing that misses one', async () => {
    const lenient = { capabilities: { scanDelivery: 'atLeastOnce' as const }, only: ['scan' as const] };
    const repeats = await checkConformance({ ...flawedOptions(['scanRepeats']), ...lenient });
    expect(names(repeats.failed)).toEqual([]);
    const skips = await checkConformance({ ...flawedOptions(['scanSkips']), ...lenient });
    expect(names(skips.failed)).toEqual(
      ['10,000 users', 'small pages', 'writes and deletes between pages']
        .map((s) => checkNamed('scan', s))
        .sort(),
    );
  });
});

describe('uncovered capabilities and groups are reported, never silent', () => {
  it('says so when the adapter has no scan() or restore(), and runs no check of those groups', async () => {
    const options = flawedOptions();
    const report = await checkConformance({
      ...options,
      name: 'without optional methods',
      createAdapter: async (ctx) => {
        const adapter = await options.createAdapter(ctx);
        // Only the required methods, as an adapter written before scan and restore existed.
        return {
          name: adapter.name,
          setup: () => adapter.setup(),
          load: (userId: UserId) => adapter.load(userId),
          save: (records: readonly SaveRecord[]) => adapter.save(records),
          delete: (userId: UserId, expectedVersion?: number) => adapter.delete(userId, expectedVersion),
          close: () => adapter.close(),
        } as unknown as FlawedAdapter;
      },
      only: ['scan', 'restore'],
    });
    expect(report.failed).toEqual([]);
    expect(report.passed).toEqual([]);
    expect(report.notices.filter((notice) => !notice.startsWith('group '))).toEqual([
      expect.stringMatching(/^the adapter has no scan\(\): the scan group's checks did not run/),
      expect.stringMatching(/^the adapter has no restore\(\): the restore group's checks did not run/),
    ]);
  });

  it('lists missing inspect, injectedClient and rejectedUserData, and groups left out by only/skip', async () => {
    const { inspect: _i, injectedClient: _c, capabilities: _k, ...bare } = flawedOptions();
    const report = await checkConformance({
      ...bare,
      only: ['isolation', 'lifecycle', 'ids'],
      skip: ['ids'],
    });
    const notices = report.notices.join('\n');
    expect(notices).toMatch(/inspect is not provided/);
    expect(notices).toMatch(/injectedClient is not provided/);
    expect(notices).toMatch(/rejectedUserData is not declared/);
    for (const group of conformanceGroups.filter((g) => g !== 'isolation' && g !== 'lifecycle')) {
      expect(notices).toContain(`group "${group}" was left out`);
    }
    expect(report.failed).toEqual([]);
    expect(new Set(report.passed.map((o) => o.group))).toEqual(new Set(['isolation', 'lifecycle']));
    expect(report.passed.map((o) => o.name)).not.toContain(checkNamed('lifecycle', 'an injected client'));
  });

  it('refuses options it cannot honour', async () => {
    const options = flawedOptions();
    await expect(checkConformance({ ...options, only: ['nope' as ConformanceGroup] })).rejects.toThrow(
      /unknown groups/,
    );
    await expect(checkConformance({ ...options, capabilities: { batchSize: 0 } })).rejects.toThrow(
      /batchSize/,
    );
    await expect(checkConformance({ ...options, name: '' })).rejects.toThrow(/name/);
  });
});

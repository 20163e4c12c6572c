/**
 * MemoryAdapter throughput: saving and loading 10,000 users, the batch core's pipeline sends (JSON already
 * serialised) and the same batch from a caller that leaves validation to the adapter; and what FaultyAdapter
 * adds without faults. Run with `pnpm bench`.
 */
import { type BenchRow, medianMs, report } from '@cagey-sessions/bench-kit';
import type { SaveRecord } from '@cagey-sessions/core';
import { FaultyAdapter, MemoryAdapter } from '../src/index.js';

const USERS = 10_000;
const RUNS = 21;

function playerData(i: number) {
  return {
    name: `player-${i}`,
    gold: i,
    level: 1 + (i % 50),
    items: ['sword', 'shield'],
    settings: { sound: true },
  };
}

const plain: SaveRecord[] = Array.from({ length: USERS }, (_, i) => ({ userId: i, userData: playerData(i) }));
const precomputed: SaveRecord[] = plain.map((r) => ({ ...r, json: JSON.stringify(r.userData) }));
const conditional: SaveRecord[] = precomputed.map((r) => ({ ...r, expectedVersion: 1 }));

async function main() {
  const rows: BenchRow[] = [];
  const perRecord = (ms: number) => `${((ms * 1000) / USERS).toFixed(2)} µs per record`;

  let adapter = new MemoryAdapter();
  const insert = await medianMs(
    RUNS,
    () => adapter.save(precomputed),
    () => {
      adapter = new MemoryAdapter();
    },
  );
  rows.push({
    name: `save ${USERS} new users (precomputed json)`,
    value: insert,
    unit: 'ms',
    note: perRecord(insert),
  });

  const update = await medianMs(
    RUNS,
    () => adapter.save(conditional),
    async () => {
      adapter = new MemoryAdapter();
      await adapter.save(precomputed);
    },
  );
  rows.push({
    name: `save ${USERS} conditional updates`,
    value: update,
    unit: 'ms',
    note: perRecord(update),
  });

  const validated = await medianMs(
    RUNS,
    () => adapter.save(plain),
    () => {
      adapter = new MemoryAdapter();
    },
  );
  rows.push({
    name: `save ${USERS} new users (validated and serialised by saveBatch)`,
    value: validated,
    unit: 'ms',
    note: perRecord(validated),
  });

  const loaded = new MemoryAdapter();
  await loaded.save(precomputed);
  const load = await medianMs(RUNS, async () => {
    for (let i = 0; i < USERS; i++) await loaded.load(i);
  });
  rows.push({ name: `load ${USERS} users one by one`, value: load, unit: 'ms', note: perRecord(load) });

  let faulty = new FaultyAdapter(new MemoryAdapter());
  const wrapped = await medianMs(
    RUNS,
    () => faulty.save(precomputed),
    () => {
      faulty = new FaultyAdapter(new MemoryAdapter());
    },
  );
  rows.push({
    name: `FaultyAdapter(MemoryAdapter), no faults: save ${USERS} new users`,
    value: wrapped,
    unit: 'ms',
    note: `+${(wrapped - insert).toFixed(2)} ms over MemoryAdapter alone`,
  });

  report('testing-memory', rows, { users: USERS, runs: RUNS });
}

await main();

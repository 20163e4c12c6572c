/** Group lifecycle: close, injected clients, setup. */
import type { PersistenceAdapter } from '@cagey-sessions/core';
import { expect, expectCode, expectOk, expectStored, rejection, saveOne } from './assertions.js';
import type { Check, CheckContext } from './context.js';

async function expectClosed(adapter: PersistenceAdapter, label: string): Promise<void> {
  const calls: [string, () => unknown][] = [
    ['load("x")', () => adapter.load('x')],
    ['save([x])', () => adapter.save([{ userId: 'x', userData: { n: 1 } }])],
    ['delete("x")', () => adapter.delete('x')],
  ];
  if (typeof adapter.setup === 'function') calls.push(['setup()', () => adapter.setup!()]);
  if (typeof adapter.scan === 'function') calls.push(['scan()', () => adapter.scan!()]);
  if (typeof adapter.restore === 'function') {
    calls.push(['restore([x])', () => adapter.restore!([{ userId: 'x', userData: { n: 1 }, version: 3 }])]);
  }
  for (const [what, call] of calls) {
    const label2 = `${what} on ${label}`;
    expectCode(await rejection(call, label2), 'ADAPTER_CLOSED', label2, 'AdapterError');
  }
}

const noSetupNote =
  'setup(): the adapter declares none, so it must work on a fresh namespace as it is (that is what was checked)';

/** Without setup(), an adapter must work on a brand-new namespace with no preparation. */
async function checkWorksWithoutSetup(t: CheckContext, adapters: PersistenceAdapter[]): Promise<void> {
  t.note(noSetupNote);
  for (const [i, adapter] of adapters.entries()) {
    expectOk(
      await saveOne(adapter, `no-setup-${i}`, { i }, 0),
      1,
      `insert through adapter ${i} without setup`,
    );
  }
}

export const lifecycleChecks: Check[] = [
  {
    group: 'lifecycle',
    name: 'close() twice resolves, and every method then rejects with ADAPTER_CLOSED',
    async run(t) {
      const adapter = await t.open();
      expectOk(await saveOne(adapter, 'before-close', { n: 1 }), 1, 'write before close');
      await adapter.close();
      await adapter.close();
      await expectClosed(adapter, 'an adapter closed twice');
      const other = await t.open();
      await Promise.all([other.close(), other.close()]);
      await expectClosed(other, 'an adapter closed twice at once');
    },
  },
  {
    group: 'lifecycle',
    name: 'closing one process leaves another over the same namespace working',
    async run(t) {
      const a = await t.open();
      const b = await t.open();
      expectOk(await saveOne(a, 'survivor', { n: 1 }), 1, 'write through the first adapter');
      await a.close();
      expectOk(
        await saveOne(b, 'survivor', { n: 2 }, 1),
        2,
        'write through the second adapter after the first closed',
      );
      await expectStored(t, b, 'survivor', { userData: { n: 2 }, version: 2 });
    },
  },
  {
    group: 'lifecycle',
    name: 'an injected client stays open after the adapter closes',
    requires: 'injectedClient',
    async run(t) {
      const injected = (await t.injectedClient())!;
      expectOk(
        await saveOne(injected.adapter, 'injected', { n: 1 }),
        1,
        'write through the injected-client adapter',
      );
      expect(await injected.clientWorks(), 'the client works before close').toBe(true);
      await injected.adapter.close();
      expect(await injected.clientWorks(), 'the client still works after adapter.close()').toBe(true);
      await expectClosed(injected.adapter, 'the closed injected-client adapter');
      const other = await t.adapter();
      await expectStored(
        t,
        other,
        'injected',
        { userData: { n: 1 }, version: 1 },
        'what the injected-client adapter wrote',
      );
    },
  },
  {
    group: 'lifecycle',
    name: 'setup() is idempotent: twice on one adapter, and again once data exists, keeping the data',
    async run(t) {
      const adapter = await t.open({ setup: false });
      if (typeof adapter.setup !== 'function') return checkWorksWithoutSetup(t, [adapter]);
      await adapter.setup();
      await adapter.setup();
      expectOk(await saveOne(adapter, 'kept', { n: 1 }), 1, 'write after setup');
      await adapter.setup();
      await expectStored(
        t,
        adapter,
        'kept',
        { userData: { n: 1 }, version: 1 },
        'data after a third setup()',
      );
    },
  },
  {
    group: 'lifecycle',
    name: 'setup() run by 4 processes at once on a new namespace succeeds, and all 4 then work',
    async run(t) {
      const adapters = await Promise.all(Array.from({ length: 4 }, () => t.open({ setup: false })));
      if (typeof adapters[0]!.setup !== 'function') return checkWorksWithoutSetup(t, adapters);
      await Promise.all(adapters.map((adapter) => adapter.setup!()));
      const results = await Promise.all(adapters.map((adapter, i) => saveOne(adapter, `p-${i}`, { i }, 0)));
      for (const [i, result] of results.entries()) expectOk(result, 1, `insert through process ${i}`);
      for (const [i, adapter] of adapters.entries()) {
        for (let j = 0; j < adapters.length; j++) {
          expect(await adapter.load(`p-${j}`), `process ${i} loads p-${j}`).toEqual({
            userData: { i: j },
            version: 1,
          });
        }
      }
    },
  },
];

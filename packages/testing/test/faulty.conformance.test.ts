/**
 * Without faults FaultyAdapter is a transparent pass-through: wrapped around an adapter that needs setup(),
 * it passes the whole suite, setup checks included.
 */
import { runAdapterConformance } from '../src/conformance/index.js';
import { FaultyAdapter } from '../src/index.js';
import type { FlawedAdapter } from './fixtures/flawed-adapter.js';
import { flawedOptions } from './fixtures/options.js';

const { destroyAdapter: _none, ...inner } = flawedOptions();

runAdapterConformance<FaultyAdapter<FlawedAdapter>>({
  ...inner,
  name: 'faulty(flawed) without faults',
  createAdapter: async (ctx) => new FaultyAdapter(await inner.createAdapter(ctx)),
  injectedClient: async (ctx) => {
    const injected = await inner.injectedClient!(ctx);
    return { ...injected, adapter: new FaultyAdapter(injected.adapter) };
  },
});

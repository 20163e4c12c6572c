import { runAdapterConformance } from '../src/conformance/index.js';
import { MemoryAdapter, MemoryStore } from '../src/index.js';

/** One store per namespace: adapters created with the same namespace are two processes over one database. */
const stores = new Map<string, MemoryStore>();
const storeFor = (namespace: string) => {
  let store = stores.get(namespace);
  if (!store) {
    store = new MemoryStore();
    stores.set(namespace, store);
  }
  return store;
};

runAdapterConformance({
  name: 'memory',
  createAdapter: ({ namespace }) => new MemoryAdapter({ store: storeFor(namespace) }),
  inspect: async ({ namespace }, userId) => storeFor(namespace).peek(userId),
  injectedClient: async ({ namespace }) => {
    const store = storeFor(namespace);
    return {
      adapter: new MemoryAdapter({ store }),
      // The store is the caller-owned "client": it must still accept direct writes after the adapter closed.
      clientWorks: async () => {
        const before = store.versionOf('client-probe');
        await new MemoryAdapter({ store }).save([{ userId: 'client-probe', userData: {} }]);
        return store.versionOf('client-probe') === before + 1;
      },
      dispose: async () => {},
    };
  },
  afterAll: async ({ namespaces }) => {
    for (const namespace of namespaces) stores.delete(namespace);
  },
});

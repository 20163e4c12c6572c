import { runPresenceConformance } from '../src/conformance/index.js';
import { MemoryPresence, PresenceHub } from '../src/index.js';

const hubs = new Map<string, PresenceHub>();

runPresenceConformance({
  name: 'MemoryPresence',
  createPresence({ namespace }) {
    let hub = hubs.get(namespace);
    if (hub === undefined) {
      hub = new PresenceHub();
      hubs.set(namespace, hub);
    }
    return new MemoryPresence({ hub });
  },
});

// The conformance suite needs vitest, so it has its own entry point: @cagey-sessions/testing/conformance.
export {
  type AdapterMethod,
  type FailOptions,
  type FaultTarget,
  FaultyAdapter,
  type FaultyAdapterOptions,
  type HangHandle,
  type LatencySpec,
  type ObservedCall,
  type SaveObservation,
} from './faulty.js';
export { MemoryAdapter, type MemoryAdapterOptions, MemoryStore } from './memory.js';
export { MemoryPresence, type MemoryPresenceOptions, PresenceHub } from './presence.js';

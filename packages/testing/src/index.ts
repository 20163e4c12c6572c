export {
  type AdapterMethod,
  type FailOptions,
  FaultyAdapter,
  type FaultyAdapterOptions,
  type FaultTarget,
  type HangHandle,
  type LatencySpec,
  type ObservedCall,
  type SaveObservation,
} from './faulty.js';
export { MemoryAdapter, type MemoryAdapterOptions, MemoryStore } from './memory.js';

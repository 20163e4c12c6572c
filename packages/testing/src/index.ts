export type { Check, CheckContext } from './conformance/context.js';
export { checkConformance, conformanceChecks, runAdapterConformance } from './conformance/run.js';
export {
  type CheckOutcome,
  type ConformanceCapabilities,
  type ConformanceContext,
  type ConformanceGroup,
  type ConformanceOptions,
  type ConformanceReport,
  conformanceGroups,
  type InjectedClient,
  type InspectedUser,
} from './conformance/types.js';
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

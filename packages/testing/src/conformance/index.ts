/**
 * `@cagey-sessions/testing/conformance`: the suite every storage adapter runs. It registers vitest tests, so it
 * needs vitest (>= 3); the package root (MemoryAdapter, FaultyAdapter) does not load it.
 */
export type { Check, CheckContext } from './context.js';
export { type PresenceConformanceOptions, runPresenceConformance } from './presence.js';
export { checkConformance, conformanceChecks, runAdapterConformance } from './run.js';
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
} from './types.js';

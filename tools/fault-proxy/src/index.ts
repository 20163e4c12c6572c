export { matchesText, postgresReplyComplete } from './matchers.js';
export { type CutSpec, type FaultProxy, type FaultProxyOptions, startFaultProxy } from './proxy.js';

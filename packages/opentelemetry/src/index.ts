/**
 * `@cagey-sessions/opentelemetry`: OpenTelemetry metrics and spans for a SessionManager, from the events core
 * publishes on `node:diagnostics_channel`.
 */
export { type Instrumentation, type InstrumentOptions, instrument } from './instrument.js';

export { COMMANDS } from './args.js';
export { CliError, type CliErrorCode } from './errors.js';
export { EXIT, type ExitCode } from './exit-codes.js';
export { type CliIo, run } from './main.js';
export type { Summary } from './summary.js';

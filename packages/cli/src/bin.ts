#!/usr/bin/env node
import { EXIT } from './exit-codes.js';
import { run } from './main.js';

// First Ctrl-C (or SIGTERM): finish the batches in flight, print the summary, exit 130. Second: exit at once.
const stop = new AbortController();
const onSignal = () => {
  if (stop.signal.aborted) process.exit(EXIT.interrupted);
  process.stderr.write('\nStopping after the batches in flight (Ctrl-C again to quit at once)…\n');
  stop.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const code = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  signal: stop.signal,
});
process.off('SIGINT', onSignal);
process.off('SIGTERM', onSignal);
process.exitCode = code;

import type { Readable, Writable } from 'node:stream';

import { optionalString, type Parsed, parseCommandLine, positiveInteger, required } from './args.js';
import { copyUsers } from './copy.js';
import { CliError, Redactor } from './errors.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { fileSink, type LineSink, openInput, readLines, streamSink, toLine } from './jsonl.js';
import { Progress } from './progress.js';
import { type RetryOptions, withRetry } from './retry.js';
import { type SourceUser, scanPages } from './source.js';
import { RunStats } from './stats.js';
import { checkStore, messageOf, type OpenStore, openStore, type StoreSpec } from './stores.js';
import { renderSummary, type Summary } from './summary.js';
import { findExtra, verifyAgainst } from './verify.js';

/** What the command line reads and writes; the real process's streams in `bin.ts`, others in tests. */
export interface CliIo {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean; columns?: number };
  stdin: Readable;
  /** Aborted on Ctrl-C: the run stops starting batches, lets the in-flight ones finish and prints its summary. */
  signal?: AbortSignal;
}

/** Runs one command line (without the program name) and resolves with the process exit code. Never rejects. */
export async function run(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const redactor = new Redactor();
  let parsed: Parsed;
  try {
    const result = parseCommandLine(argv);
    if ('help' in result) {
      io.stdout.write(result.help);
      return EXIT.ok;
    }
    parsed = result;
  } catch (error) {
    io.stderr.write(`cagey-sessions: ${redactor.text(messageOf(error))}\n`);
    return error instanceof CliError ? error.exitCode : EXIT.failed;
  }
  return new Command(parsed, io, redactor).run();
}

class Command {
  readonly #parsed: Parsed;
  readonly #io: CliIo;
  readonly #redactor: Redactor;
  readonly #stats = new RunStats();
  readonly #stores: OpenStore[] = [];
  readonly #signal: AbortSignal;
  readonly #batchSize: number;
  readonly #concurrency: number;
  readonly #retryForMs: number;
  #progress: Progress | undefined;
  #summaryStream: Writable;

  constructor(parsed: Parsed, io: CliIo, redactor: Redactor) {
    this.#parsed = parsed;
    this.#io = io;
    this.#redactor = redactor;
    this.#signal = io.signal ?? new AbortController().signal;
    this.#summaryStream = io.stdout;
    this.#batchSize = positiveInteger(parsed, 'batch-size', 500, 10_000);
    this.#concurrency = positiveInteger(parsed, 'concurrency', 4, 64);
    this.#retryForMs = positiveInteger(parsed, 'retry-for', 60, 86_400) * 1000;
  }

  async run(): Promise<ExitCode> {
    const started = Date.now();
    const name = this.#parsed.command.name;
    let failure: unknown;
    try {
      this.#checkStores();
      if (name === 'migrate') await this.#migrate();
      else if (name === 'export') await this.#export();
      else if (name === 'import') await this.#import();
      else if (name === 'verify') await this.#verify();
      else await this.#count();
    } catch (error) {
      failure = error;
    } finally {
      this.#progress?.stop();
      await this.#closeStores();
    }
    return this.#finish(started, failure);
  }

  get #flag() {
    return this.#parsed.values;
  }

  #retry(what: string): RetryOptions {
    return {
      retryForMs: this.#retryForMs,
      what,
      redact: (text) => this.#redactor.text(text),
      onRetry: (error) => {
        this.#stats.retries++;
        if (this.#progress)
          this.#progress.note = `retrying: ${this.#redactor.text(messageOf(error)).slice(0, 60)}`;
      },
    };
  }

  #spec(role: 'from' | 'to' | '', url: string): StoreSpec {
    const prefix = role === '' ? '' : `${role}-`;
    return {
      url,
      table: optionalString(this.#parsed, `${prefix}table`),
      prefix: optionalString(this.#parsed, `${prefix}prefix`),
      collection: optionalString(this.#parsed, `${prefix}collection`),
      database: optionalString(this.#parsed, `${prefix}database`),
      flagPrefix: prefix,
    };
  }

  /**
   * Checks both sides' URLs and options before either store is opened: a misplaced `--to-table` is bad usage
   * reported at once, not after the source was reached (or retried for `--retry-for` seconds).
   */
  #checkStores(): void {
    for (const role of ['from', 'to'] as const) {
      const url = optionalString(this.#parsed, role);
      if (url !== undefined) checkStore(this.#spec(role, url), this.#redactor);
    }
  }

  async #open(role: 'from' | 'to' | '', url: string, needs: 'scan' | 'restore' | 'load'): Promise<OpenStore> {
    const store = await openStore(this.#spec(role, url), this.#redactor);
    this.#stores.push(store);
    const { adapter, label } = store;
    if (needs === 'scan' && typeof adapter.scan !== 'function') {
      throw new CliError(
        'UNSUPPORTED_STORE',
        `The ${adapter.name} adapter cannot list users (no scan()); update it.`,
      );
    }
    if (needs === 'restore' && typeof adapter.restore !== 'function') {
      throw new CliError(
        'UNSUPPORTED_STORE',
        `The ${adapter.name} adapter cannot write versioned copies (no restore()); update it.`,
      );
    }
    if (needs === 'restore' && adapter.setup) {
      await withRetry(() => adapter.setup!(), this.#retry(`setting up ${label}`));
    } else {
      // Reaches the store once now, so an unreachable one is reported before anything starts.
      await withRetry(() => adapter.load('cagey-sessions-cli-probe'), this.#retry(`reaching ${label}`));
    }
    return store;
  }

  #scan(store: OpenStore): AsyncGenerator<SourceUser[]> {
    return scanPages(store.adapter, {
      pageSize: this.#batchSize,
      signal: this.#signal,
      retry: this.#retry(`listing users of ${store.label}`),
    });
  }

  #showProgress(label: string, countFrom?: OpenStore): void {
    if (this.#flag.quiet) return;
    const stderr = this.#io.stderr;
    this.#progress = new Progress(label, this.#stats, {
      write: (text) => stderr.write(text),
      isTTY: stderr.isTTY === true,
      columns: stderr.columns,
    });
    // On a terminal the total is counted beside the run (one more listing), for the bar and the ETA.
    if (countFrom && stderr.isTTY) void this.#countInBackground(countFrom);
  }

  async #countInBackground(store: OpenStore): Promise<void> {
    try {
      let total = 0;
      for await (const page of this.#scan(store)) total += page.length;
      // A listing stopped by Ctrl-C counted only part of the source: the bar keeps showing the count alone.
      if (!this.#signal.aborted) this.#stats.total = total;
    } catch {
      // Only the display needs the total.
    }
  }

  #writeOptions() {
    return {
      batchSize: this.#batchSize,
      concurrency: this.#concurrency,
      dryRun: this.#flag['dry-run'] === true,
      overwrite: this.#flag.overwrite === true,
      live: this.#flag.live === true,
      signal: this.#signal,
      stats: this.#stats,
    };
  }

  async #migrate(): Promise<void> {
    const from = await this.#open('from', required(this.#parsed, 'from'), 'scan');
    const to = await this.#open('to', required(this.#parsed, 'to'), 'restore');
    this.#checkOverwrite();
    this.#showProgress('migrate', from);
    await copyUsers(this.#scan(from), {
      target: to.adapter,
      ...this.#writeOptions(),
      retry: this.#retry(`writing to ${to.label}`),
    });
  }

  async #import(): Promise<void> {
    const to = await this.#open('to', required(this.#parsed, 'to'), 'restore');
    this.#checkOverwrite();
    const input = openInput(optionalString(this.#parsed, 'in'), this.#io.stdin);
    this.#showProgress('import');
    const lines = readLines(input, { pageSize: this.#batchSize, signal: this.#signal, stats: this.#stats });
    await copyUsers(lines, {
      target: to.adapter,
      ...this.#writeOptions(),
      retry: this.#retry(`writing to ${to.label}`),
    });
  }

  #checkOverwrite(): void {
    if (this.#flag.overwrite && this.#flag.live) {
      throw new CliError('USAGE', '--overwrite and --live contradict each other: choose one.');
    }
  }

  async #export(): Promise<void> {
    const from = await this.#open('from', required(this.#parsed, 'from'), 'scan');
    const out = optionalString(this.#parsed, 'out');
    const toStdout = out === undefined || out === '-';
    if (toStdout) this.#summaryStream = this.#io.stderr;
    const sink: LineSink = toStdout ? streamSink(this.#io.stdout) : fileSink(out);
    this.#showProgress('export', from);
    let complete = false;
    try {
      for await (const page of this.#scan(from)) {
        for (const user of page) await sink.write(toLine(user));
        this.#stats.done += page.length;
        if (this.#signal.aborted) break;
      }
      complete = !this.#signal.aborted;
    } finally {
      if (complete) await sink.commit();
      else await sink.abandon();
    }
  }

  async #verify(): Promise<void> {
    const from = await this.#open('from', required(this.#parsed, 'from'), 'scan');
    const to = await this.#open('to', required(this.#parsed, 'to'), 'scan');
    this.#showProgress('verify', from);
    const options = {
      batchSize: this.#batchSize,
      concurrency: this.#concurrency,
      live: this.#flag.live === true,
      signal: this.#signal,
      stats: this.#stats,
    };
    await verifyAgainst(this.#scan(from), {
      ...options,
      other: to.adapter,
      retry: this.#retry(`reading ${to.label}`),
    });
    if (this.#signal.aborted) return;
    if (this.#progress) this.#progress.note = 'looking for users only in the target';
    await findExtra(this.#scan(to), {
      ...options,
      other: from.adapter,
      retry: this.#retry(`reading ${from.label}`),
    });
  }

  async #count(): Promise<void> {
    const [url, ...extra] = this.#parsed.positionals;
    if (url === undefined || extra.length > 0) {
      throw new CliError('USAGE', `count takes one store URL. Usage: ${this.#parsed.command.usage}`);
    }
    const store = await this.#open('', url, 'scan');
    this.#showProgress('count');
    for await (const page of this.#scan(store)) this.#stats.done += page.length;
  }

  #finish(started: number, failure: unknown): ExitCode {
    if (failure instanceof CliError && failure.exitCode === EXIT.usage) {
      this.#io.stderr.write(`cagey-sessions: ${this.#redactor.text(failure.message)}\n`);
      return failure.exitCode;
    }
    const stats = this.#stats;
    const interrupted = this.#signal.aborted && failure === undefined;
    let exitCode: ExitCode;
    if (failure !== undefined) exitCode = failure instanceof CliError ? failure.exitCode : EXIT.failed;
    else if (interrupted) exitCode = EXIT.interrupted;
    else if (stats.errors > 0) exitCode = EXIT.failed;
    else if (stats.differences > 0) exitCode = EXIT.differences;
    else if (stats.conflicts > 0) exitCode = EXIT.conflicts;
    else exitCode = EXIT.ok;

    const summary: Summary = {
      command: this.#parsed.command.name,
      outcome: failure !== undefined ? 'failed' : interrupted ? 'interrupted' : 'complete',
      exitCode,
      dryRun: this.#flag['dry-run'] === true,
      seconds: (Date.now() - started) / 1000,
      counts: this.#counts(),
      problems: stats.problems.map((p) => ({ ...p, message: this.#redactor.text(p.message) })),
      problemCount: stats.problemCount,
      error: failure === undefined ? undefined : this.#redactor.text(messageOf(failure)),
    };
    if (this.#flag.json) this.#summaryStream.write(`${JSON.stringify(summary)}\n`);
    else this.#summaryStream.write(renderSummary(summary));
    return exitCode;
  }

  #counts(): Record<string, number> {
    const s = this.#stats;
    switch (this.#parsed.command.name) {
      case 'migrate':
      case 'import':
        return {
          users: s.done,
          copied: s.copied,
          alreadyThere: s.alreadyThere,
          ...(this.#flag.live ? { newerInTarget: s.newerInTarget } : {}),
          ...(this.#flag.overwrite ? { overwritten: s.overwritten } : {}),
          conflicts: s.conflicts,
          errors: s.errors,
          retries: s.retries,
        };
      case 'export':
        return { exported: s.done, retries: s.retries };
      case 'verify':
        return {
          compared: s.done,
          differences: s.differences,
          ...(this.#flag.live ? { newerInTarget: s.newerInTarget } : {}),
          retries: s.retries,
        };
      default:
        return { users: s.done };
    }
  }

  async #closeStores(): Promise<void> {
    await Promise.allSettled(this.#stores.map((store) => store.close()));
  }
}

import { createReadStream, createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { CliError } from './errors.js';
import type { SourceUser } from './source.js';
import type { RunStats } from './stats.js';

/**
 * One user a line: `{"userId":"42","version":7,"userData":{…}}`. The version travels with the data, so an
 * import writes each user at the version it had, conditionally (see `copyUsers`).
 */
export function toLine(user: SourceUser): string {
  return `${JSON.stringify({ userId: user.userId, version: user.version, userData: user.userData })}\n`;
}

/** Where an export writes: a file (written beside it and renamed into place when complete) or stdout. */
export interface LineSink {
  write(line: string): Promise<void>;
  /** The export is complete: renames the file into place. */
  commit(): Promise<void>;
  /** The export stopped early: removes the partial file (stdout cannot be taken back). */
  abandon(): Promise<void>;
}

export function fileSink(path: string): LineSink {
  const partial = `${path}.partial`;
  const stream = createWriteStream(partial);
  let failure: Error | undefined;
  stream.on('error', (error) => {
    failure ??= error;
  });
  const closed = new Promise<void>((resolve) => stream.once('close', resolve));
  return {
    async write(line) {
      if (failure) throw failure;
      await writeWithBackpressure(stream, line);
      if (failure) throw failure;
    },
    async commit() {
      stream.end();
      await closed;
      if (failure) throw failure;
      renameSync(partial, path);
    },
    async abandon() {
      stream.end();
      await closed;
      rmSync(partial, { force: true });
    },
  };
}

export function streamSink(stream: Writable): LineSink {
  // A reader that goes away (`| head`) makes the stream fail with EPIPE: the export stops with that error
  // instead of an uncaught one.
  let failure: Error | undefined;
  const onError = (error: Error) => {
    failure ??= error;
  };
  stream.on('error', onError);
  return {
    async write(line) {
      if (failure) throw failure;
      await writeWithBackpressure(stream, line);
      if (failure) throw failure;
    },
    commit: async () => {
      stream.off('error', onError);
    },
    abandon: async () => {
      stream.off('error', onError);
    },
  };
}

async function writeWithBackpressure(stream: Writable, line: string): Promise<void> {
  if (stream.write(line)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('error', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('error', done);
    stream.on('close', done);
  });
}

/** Bad input in an import: the line and why. */
export interface LineProblem {
  line: number;
  message: string;
}

/**
 * Reads an export back a page at a time (`pageSize` users), line by line, so any size of file fits in bounded
 * memory. A line that is not a user (bad JSON, a missing or invalid field) is counted as an error in `stats`
 * with its line number, and skipped; blank lines are ignored.
 */
export async function* readLines(
  input: Readable,
  options: { pageSize: number; signal: AbortSignal; stats: RunStats },
): AsyncGenerator<SourceUser[]> {
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let page: SourceUser[] = [];
  let number = 0;
  try {
    for await (const text of lines) {
      number++;
      if (text.trim() === '') continue;
      const parsed = parseLine(text);
      if (typeof parsed === 'string') {
        options.stats.problem({ userId: `(line ${number})`, kind: 'error', message: parsed });
        options.stats.done++;
        continue;
      }
      page.push(parsed);
      if (page.length >= options.pageSize) {
        yield page;
        page = [];
        if (options.signal.aborted) return;
      }
    }
    if (page.length > 0) yield page;
  } finally {
    lines.close();
  }
}

export function openInput(path: string | undefined, stdin: Readable): Readable {
  if (path === undefined || path === '-') return stdin;
  if (!existsSync(path)) throw new CliError('USAGE', `--in ${JSON.stringify(path)}: no such file.`);
  return createReadStream(path);
}

/** The user of a line, or why it is not one. */
export function parseLine(text: string): SourceUser | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `not JSON (${(error as Error).message})`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const { userId, version, userData } = value as Record<string, unknown>;
  if (typeof userId !== 'string' && !Number.isSafeInteger(userId)) {
    return 'userId must be a string or a safe integer';
  }
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    return 'version must be a positive integer';
  }
  if (typeof userData !== 'object' || userData === null || Array.isArray(userData)) {
    return 'userData must be a JSON object';
  }
  return { userId: String(userId), version, userData };
}

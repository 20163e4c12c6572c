import { parseArgs } from 'node:util';
import { nearestKey } from '@cagey-sessions/core/adapter-kit';
import { CliError } from './errors.js';

type OptionSpec = { type: 'string' | 'boolean'; short?: string; help: string; value?: string };

const STORE_OPTIONS = (role: 'from' | 'to' | '') => {
  const prefix = role === '' ? '' : `${role}-`;
  const which = role === '' ? 'the store' : `the ${role === 'from' ? 'source' : 'target'}`;
  return {
    [`${prefix}table`]: {
      type: 'string',
      value: 'name',
      help: `PostgreSQL/PGlite: table of ${which} (default cagey_user_data)`,
    },
    [`${prefix}prefix`]: {
      type: 'string',
      value: 'prefix',
      help: `Redis: key prefix of ${which} (default cagey:user:)`,
    },
    [`${prefix}collection`]: {
      type: 'string',
      value: 'name',
      help: `MongoDB: collection of ${which} (default cagey_user_data)`,
    },
    [`${prefix}database`]: {
      type: 'string',
      value: 'name',
      help: `MongoDB: database of ${which} (default: the URL's)`,
    },
  } satisfies Record<string, OptionSpec>;
};

const COMMON = {
  help: { type: 'boolean', short: 'h', help: 'show this help' },
  json: { type: 'boolean', help: 'print the summary as JSON on stdout' },
  quiet: { type: 'boolean', help: 'no progress display' },
  'batch-size': { type: 'string', value: 'n', help: 'users per read and per write (default 500)' },
  concurrency: { type: 'string', value: 'n', help: 'batches in flight at once (default 4)' },
  'retry-for': {
    type: 'string',
    value: 'seconds',
    help: 'keep retrying a failing store this long (default 60)',
  },
} satisfies Record<string, OptionSpec>;

const WRITE_OPTIONS = {
  'dry-run': { type: 'boolean', help: 'read the target and say what would be written; write nothing' },
  overwrite: {
    type: 'boolean',
    help: 'replace newer data in the target (default: keep it, report a conflict)',
  },
  live: {
    type: 'boolean',
    help: 'the target is live behind a MigratingAdapter: newer data there is a player who played since, not a conflict',
  },
} satisfies Record<string, OptionSpec>;

export interface CommandSpec {
  name: string;
  usage: string;
  summary: string;
  options: Record<string, OptionSpec>;
  positionals?: string;
}

export const COMMANDS: CommandSpec[] = [
  {
    name: 'migrate',
    usage: 'cagey-sessions migrate --from <url> --to <url> [options]',
    summary:
      'copy every user from one store to another, with their versions; resumable; never overwrites newer data',
    options: {
      from: {
        type: 'string',
        value: 'url',
        help: 'source store URL, or env:NAME to read it from a variable',
      },
      to: { type: 'string', value: 'url', help: 'target store URL, or env:NAME' },
      ...STORE_OPTIONS('from'),
      ...STORE_OPTIONS('to'),
      ...WRITE_OPTIONS,
      ...COMMON,
    },
  },
  {
    name: 'export',
    usage: 'cagey-sessions export --from <url> [--out players.jsonl] [options]',
    summary: 'write every user as JSON Lines ({"userId","version","userData"} a line) to a file or stdout',
    options: {
      from: { type: 'string', value: 'url', help: 'store URL, or env:NAME' },
      out: {
        type: 'string',
        value: 'file',
        help: 'file to write (default stdout); written as <file>.partial, renamed when complete',
      },
      ...STORE_OPTIONS('from'),
      ...COMMON,
    },
  },
  {
    name: 'import',
    usage: 'cagey-sessions import --to <url> [--in players.jsonl] [options]',
    summary:
      'write users from JSON Lines (an export) into a store, with their versions; never overwrites newer data',
    options: {
      to: { type: 'string', value: 'url', help: 'store URL, or env:NAME' },
      in: { type: 'string', value: 'file', help: 'file to read (default stdin)' },
      ...STORE_OPTIONS('to'),
      ...WRITE_OPTIONS,
      ...COMMON,
    },
  },
  {
    name: 'verify',
    usage: 'cagey-sessions verify --from <url> --to <url> [options]',
    summary:
      'compare every user of two stores (missing, extra, different data or version); exit code 3 when any differ',
    options: {
      from: { type: 'string', value: 'url', help: 'source store URL, or env:NAME' },
      to: { type: 'string', value: 'url', help: 'target store URL, or env:NAME' },
      ...STORE_OPTIONS('from'),
      ...STORE_OPTIONS('to'),
      live: WRITE_OPTIONS.live,
      ...COMMON,
    },
  },
  {
    name: 'count',
    usage: 'cagey-sessions count <url> [options]',
    summary: 'count the users of a store',
    positionals: '<url>',
    options: { ...STORE_OPTIONS(''), ...COMMON },
  },
];

export type ParsedValues = Record<string, string | boolean | undefined>;

export interface Parsed {
  command: CommandSpec;
  values: ParsedValues;
  positionals: string[];
}

/** Parses a command line; USAGE errors name the nearest command or flag for a typo. */
export function parseCommandLine(argv: readonly string[]): Parsed | { help: string } {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help')
    return { help: mainHelp() };
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (command === undefined) {
    const guess = nearestKey(
      name,
      COMMANDS.map((c) => c.name),
    );
    throw new CliError(
      'USAGE',
      `Unknown command ${JSON.stringify(name)}.${guess ? ` Did you mean ${guess}?` : ''} Commands: ${COMMANDS.map((c) => c.name).join(', ')}.`,
    );
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: Object.fromEntries(
        Object.entries(command.options).map(([key, spec]) => [
          key,
          spec.short ? { type: spec.type, short: spec.short } : { type: spec.type },
        ]),
      ),
      allowPositionals: command.positionals !== undefined,
      strict: true,
    });
  } catch (error) {
    throw usageFromParseError(error, command);
  }
  if (parsed.values.help) return { help: commandHelp(command) };
  return { command, values: parsed.values as ParsedValues, positionals: parsed.positionals };
}

function usageFromParseError(error: unknown, command: CommandSpec): CliError {
  const message = error instanceof Error ? error.message : String(error);
  const unknown = /Unknown option '(-{1,2})([^']+)'/.exec(message);
  if (unknown) {
    const guess = nearestKey(unknown[2]!, Object.keys(command.options));
    return new CliError(
      'USAGE',
      `Unknown option ${unknown[1]}${unknown[2]} for ${command.name}.${guess ? ` Did you mean --${guess}?` : ''} ` +
        `See cagey-sessions ${command.name} --help.`,
    );
  }
  const positional = /Unexpected argument '([^']+)'/.exec(message);
  if (positional) {
    return new CliError(
      'USAGE',
      `Unexpected argument ${JSON.stringify(positional[1])} for ${command.name}. Usage: ${command.usage}`,
    );
  }
  return new CliError('USAGE', `${message.split('\n')[0]} (${command.name}). Usage: ${command.usage}`);
}

/** A required string option, or USAGE. */
export function required(parsed: Parsed, name: string): string {
  const value = parsed.values[name];
  if (typeof value !== 'string' || value === '') {
    throw new CliError('USAGE', `${parsed.command.name} needs --${name}. Usage: ${parsed.command.usage}`);
  }
  return value;
}

export function optionalString(parsed: Parsed, name: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A positive integer option with a default, or USAGE. */
export function positiveInteger(parsed: Parsed, name: string, fallback: number, max = 100_000): number {
  const value = parsed.values[name];
  if (value === undefined) return fallback;
  const number = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value) || number < 1 || number > max) {
    throw new CliError(
      'USAGE',
      `--${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(value)}.`,
    );
  }
  return number;
}

export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: cagey-sessions <command> [options]',
    '',
    'Moves players between cagey-sessions stores: PostgreSQL, PGlite, Redis (and Redis Cluster), MongoDB.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Store URLs: postgres://…, postgresql://…, pglite:<directory>, redis://…, rediss://…,',
    '  redis+cluster://host1:port1,host2:port2 (rediss+cluster:// for TLS), mongodb://…, mongodb+srv://…',
    '  env:NAME reads the URL from the environment variable NAME. Passwords are never printed.',
    '',
    'Exit codes: 0 ok, 1 some users failed, 2 bad usage, 3 differences (verify), 4 conflicts (skipped),',
    '  5 store unreachable, 130 interrupted (run again to go on).',
    '',
    'cagey-sessions <command> --help shows the options of a command.',
    '',
  ].join('\n');
}

export function commandHelp(command: CommandSpec): string {
  const flags = Object.entries(command.options).map(([key, spec]) => {
    const name = `${spec.short ? `-${spec.short}, ` : ''}--${key}${spec.value ? ` <${spec.value}>` : ''}`;
    return [name, spec.help] as const;
  });
  const width = Math.max(...flags.map(([name]) => name.length));
  return [
    `Usage: ${command.usage}`,
    '',
    `${command.summary[0]!.toUpperCase()}${command.summary.slice(1)}.`,
    '',
    'Options:',
    ...flags.map(([name, help]) => `  ${name.padEnd(width)}  ${help}`),
    '',
  ].join('\n');
}

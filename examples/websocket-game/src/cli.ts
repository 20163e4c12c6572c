/** Small helpers shared by the command-line entry points: durations, numbers, a console logger. */
import type { Logger } from '@cagey-sessions/core';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** `'20s'`, `'1500ms'`, `'2m'`, or a bare number of seconds. */
export function parseDuration(name: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  const value = match === null ? Number.NaN : Number(match[1]) * UNITS[match[2] ?? 's']!;
  if (!Number.isFinite(value) || value <= 0) {
    throw new UsageError(`--${name} ${JSON.stringify(text)}: expected a duration such as 20s, 1500ms or 2m.`);
  }
  return Math.round(value);
}

export function parseInteger(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} ${JSON.stringify(text)}: expected an integer from ${min} to ${max}.`);
  }
  return value;
}

/** A mistake in the command line: printed without a stack trace. */
export class UsageError extends Error {
  override name = 'UsageError';
}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
type Level = (typeof LEVELS)[number];

/**
 * A pino-style logger (`log.warn({ userId, err }, 'message')`) writing one line per entry to `stream`. Errors
 * are printed by message and code; the library and its adapters keep credentials out of both.
 */
export function consoleLogger(minimum: Level, stream: NodeJS.WritableStream = process.stderr): Logger {
  const logger: Logger = {};
  for (const level of LEVELS.slice(LEVELS.indexOf(minimum))) {
    logger[level] = (...args: unknown[]) => {
      const [first, second] = args;
      const fields = typeof first === 'object' && first !== null ? (first as Record<string, unknown>) : {};
      const message = typeof first === 'string' ? first : typeof second === 'string' ? second : '';
      const details = Object.entries(fields)
        .map(([key, value]) => `${key}=${formatValue(value)}`)
        .join(' ');
      stream.write(
        `${new Date().toISOString()} ${level.toUpperCase()} ${message}${details ? ` ${details}` : ''}\n`,
      );
    };
  }
  return logger;
}

function formatValue(value: unknown): string {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return JSON.stringify(code === undefined ? value.message : `${String(code)}: ${value.message}`);
  }
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

export function isLevel(value: string): value is Level {
  return (LEVELS as readonly string[]).includes(value);
}

import ms from 'ms';
import { ValidationError } from '../errors.js';
import { type Duration, nearestKey } from '../options.js';

/** An INVALID_OPTIONS error of an adapter: `[name] Invalid options: message`. */
export function invalidOptions(adapterName: string, message: string): ValidationError {
  return new ValidationError('INVALID_OPTIONS', `[${adapterName}] Invalid options: ${message}`);
}

/**
 * Refuses option keys the adapter does not know (INVALID_OPTIONS), naming the nearest known key for a typo,
 * or the new name of a `renamed` one (old name -> new name), so that a misspelt option never goes unnoticed;
 * and options set to `null` (leave an option out for its default).
 */
export function checkOptionKeys(
  adapterName: string,
  options: unknown,
  known: readonly string[],
  renamed: Readonly<Record<string, string>> = {},
): asserts options is object {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalidOptions(
      adapterName,
      `expected an options object, got ${options === null ? 'null' : typeof options}.`,
    );
  }
  for (const [key, value] of Object.entries(options)) {
    if (known.includes(key)) {
      // `null` is never a setting: leaving the option out gives its default.
      if (value === null)
        throw invalidOptions(adapterName, `${key} must not be null; leave it out for the default.`);
      continue;
    }
    const shownKey = JSON.stringify(key.slice(0, 60));
    const newName = Object.hasOwn(renamed, key) ? renamed[key] : undefined;
    if (newName !== undefined) throw invalidOptions(adapterName, `${shownKey} was renamed to ${newName}.`);
    const nearest = nearestKey(key, known);
    const hint = nearest === undefined ? `Known options: ${known.join(', ')}.` : `Did you mean ${nearest}?`;
    throw invalidOptions(adapterName, `unknown option ${shownKey}. ${hint}`);
  }
}

/** A value for a message: strings quoted and cut, everything else as `String()` does. */
function shown(value: unknown): string {
  return typeof value === 'string'
    ? JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
    : String(value);
}

/** Longest duration Node.js timers accept: the default upper bound of `parseDuration`. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A duration option in milliseconds: a number of milliseconds, or an `ms` string (`'500ms'`, `'5s'`, `'7d'`).
 * `undefined` gives `fallback` (itself a duration, or `undefined` for "none"). Positive, at most `max`
 * (default 2^31 - 1 ms, what Node.js timers accept; a store-side expiry may allow more). Throws
 * INVALID_OPTIONS naming the option.
 */
export function parseDuration(
  adapterName: string,
  option: string,
  value: unknown,
  fallback: Duration,
  limits?: { max?: number },
): number;
export function parseDuration(
  adapterName: string,
  option: string,
  value: unknown,
  fallback?: Duration,
  limits?: { max?: number },
): number | undefined;
export function parseDuration(
  adapterName: string,
  option: string,
  value: unknown,
  fallback?: Duration,
  { max = MAX_TIMER_MS }: { max?: number } = {},
): number | undefined {
  const given = value ?? fallback;
  if (given === undefined) return undefined;
  let milliseconds = Number.NaN;
  if (typeof given === 'number') milliseconds = given;
  else if (typeof given === 'string') {
    try {
      milliseconds = ms(given as ms.StringValue);
    } catch {
      // ms throws on an empty string; reported below like any other unusable value
    }
  }
  if (Number.isFinite(milliseconds) && milliseconds >= 1 && milliseconds <= max)
    return Math.round(milliseconds);
  throw invalidOptions(
    adapterName,
    `${option} must be a positive duration: milliseconds or a string such as '5s' (got ${shown(value)}).`,
  );
}

/** A positive integer option, at most `max`; `undefined` gives `fallback`. Throws INVALID_OPTIONS. */
export function parsePositiveInteger(
  adapterName: string,
  option: string,
  value: unknown,
  fallback: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= max) return value;
  const range = max === Number.MAX_SAFE_INTEGER ? 'a positive integer' : `an integer from 1 to ${max}`;
  throw invalidOptions(adapterName, `${option} must be ${range} (got ${shown(value)}).`);
}

/** Where an adapter's connection comes from: a client the caller owns, or a URL the adapter opens itself. */
export type ClientSource<Client> = { kind: 'client'; client: Client } | { kind: 'url'; url: string };

/**
 * Reads the `client` / `url` pair every adapter takes: exactly one of them, and without either the URL in the
 * environment variable `envVar` (e.g. `DATABASE_URL`) when given. A URL must be a non-empty string with one of
 * `schemes`; it is never repeated in a message (it may hold a password).
 */
export function clientOrUrl<Client>(
  adapterName: string,
  options: { client?: Client | undefined; url?: unknown },
  { schemes, envVar, clientNoun }: { schemes: readonly string[]; envVar?: string; clientNoun: string },
): ClientSource<Client> {
  const { client, url } = options;
  if (client !== undefined && url !== undefined) {
    throw invalidOptions(adapterName, `pass either client (${clientNoun}) or url, not both.`);
  }
  if (client !== undefined) return { kind: 'client', client };
  const found = url ?? (envVar === undefined ? undefined : process.env[envVar] || undefined);
  if (found === undefined) {
    const fromEnv = envVar === undefined ? '' : `, or set the ${envVar} environment variable`;
    throw invalidOptions(adapterName, `pass client (${clientNoun}) or url${fromEnv}.`);
  }
  const scheme =
    typeof found === 'string' ? /^([a-z][a-z0-9+.-]*):\/\//i.exec(found)?.[1]?.toLowerCase() : undefined;
  if (scheme === undefined || !schemes.includes(scheme)) {
    throw invalidOptions(
      adapterName,
      `url (not shown, it may hold a password) must start with ${schemes.map((s) => `${s}://`).join(', ')}.`,
    );
  }
  return { kind: 'url', url: found as string };
}

/**
 * Validates an identifier a user configures (table, collection, key prefix part): letters, digits and
 * underscores, not starting with a digit, at most `maxLength` characters. Throws INVALID_OPTIONS otherwise.
 */
export function checkIdentifier(adapterName: string, what: string, value: unknown, maxLength = 63): string {
  if (typeof value === 'string' && value.length <= maxLength && /^[A-Za-z_][A-Za-z0-9_]*$/.test(value))
    return value;
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid ${what} ${JSON.stringify(String(value)).slice(0, 80)}: use letters, digits and ` +
      `underscores (not starting with a digit), at most ${maxLength} characters.`,
  );
}

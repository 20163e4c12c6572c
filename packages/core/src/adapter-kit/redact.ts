import { AdapterError, CageySessionsError } from '../errors.js';

/**
 * Wraps a driver error as an `AdapterError` naming the adapter and the operation. Its `cause` is a copy of the
 * driver's error with every credential removed (see `redactError`): URL credentials, the `secrets` given (the
 * adapter's passwords), password-like properties and the arguments of AUTH/HELLO commands, at any depth.
 * Errors of this library pass through.
 */
export function wrapDriverError(
  adapterName: string,
  operation: string,
  error: unknown,
  secrets: readonly (string | undefined)[] = [],
): CageySessionsError {
  if (error instanceof CageySessionsError) return error;
  const known = usableSecrets(secrets);
  const message = error instanceof Error ? error.message : String(error);
  return new AdapterError(adapterName, `${operation} failed: ${redactText(message, known)}`, {
    cause: redactError(error, known),
  });
}

/** Masks `user:password@` in any URL inside `text`. */
export function redactCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1***@');
}

/** The password of a connection URL (percent-decoded), if it has one; for `wrapDriverError`'s `secrets`. */
export function passwordOfUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  // The user name ends at the first colon; the password runs to the last @ of the authority (an unencoded
  // `:` or `@` in a password is malformed, but drivers accept it, so it must be masked all the same).
  const match = /^[a-z][a-z0-9+.-]*:\/\/[^/:@\s]*:([^/\s]*)@[^/@\s]*(?:[/?#]|$)/i.exec(url);
  if (match === null || match[1] === '') return undefined;
  try {
    return decodeURIComponent(match[1]!);
  } catch {
    return match[1];
  }
}

/** Secrets this short would also match innocent text; they are still removed from password fields. */
const MIN_SECRET_LENGTH = 3;
const REDACTED = '***';
const SECRET_KEY = /pass(word|wd|phrase)?$|secret|token|credential|^auth$|^authorization$/i;
const AUTH_COMMANDS = new Set(['auth', 'hello', 'migrate']);
const MAX_REDACT_DEPTH = 8;

function usableSecrets(secrets: readonly (string | undefined)[]): string[] {
  const usable: string[] = [];
  for (const secret of secrets) {
    if (typeof secret !== 'string' || secret.length < MIN_SECRET_LENGTH) continue;
    usable.push(secret, encodeURIComponent(secret));
  }
  return usable;
}

function redactText(text: string, secrets: readonly string[]): string {
  let redacted = redactCredentials(text);
  for (const secret of secrets) redacted = redacted.replaceAll(secret, REDACTED);
  return redacted;
}

/**
 * A copy of `value` (typically a driver's error, with its `cause` chain) that holds no credential: strings are
 * cleaned of URL credentials and of the given secrets, password-like properties and AUTH/HELLO command
 * arguments are replaced, binary buffers are summarised, functions dropped. Errors stay errors of the same
 * class with the same stack (cleaned). Cycles and depth are bounded. The original is not modified.
 */
export function redactError(value: unknown, secrets: readonly (string | undefined)[] = []): unknown {
  const known = usableSecrets(secrets);
  const copies = new Map<object, unknown>();
  const copy = (item: unknown, depth: number, key: string): unknown => {
    if (typeof item === 'string') return SECRET_KEY.test(key) ? REDACTED : redactText(item, known);
    if (typeof item === 'function' || typeof item === 'symbol') return undefined;
    if (typeof item !== 'object' || item === null) return item;
    if (SECRET_KEY.test(key)) return REDACTED;
    const seen = copies.get(item);
    if (seen !== undefined) return seen;
    if (depth >= MAX_REDACT_DEPTH) return '[omitted: nested too deep]';
    if (ArrayBuffer.isView(item)) return `[binary, ${item.byteLength} bytes]`;
    if (item instanceof Date) return new Date(item.getTime());
    if (Array.isArray(item)) {
      const array: unknown[] = [];
      copies.set(item, array);
      for (const element of item.slice(0, 100)) array.push(copy(element, depth + 1, ''));
      return array;
    }
    const target: Record<string, unknown> =
      item instanceof Error ? Object.create(Object.getPrototypeOf(item)) : {};
    copies.set(item, target);
    const isAuthCommand =
      typeof (item as { name?: unknown }).name === 'string' &&
      AUTH_COMMANDS.has((item as { name: string }).name.toLowerCase()) &&
      Array.isArray((item as { args?: unknown }).args);
    for (const name of Object.getOwnPropertyNames(item)) {
      let property: unknown;
      try {
        property = (item as Record<string, unknown>)[name];
      } catch {
        continue;
      }
      const cleaned = isAuthCommand && name === 'args' ? [REDACTED] : copy(property, depth + 1, name);
      if (cleaned === undefined && typeof property === 'function') continue;
      Object.defineProperty(target, name, {
        value: cleaned,
        writable: true,
        configurable: true,
        enumerable: Object.prototype.propertyIsEnumerable.call(item, name),
      });
    }
    return target;
  };
  return copy(value, 0, '');
}

import { invalidOptions } from '@cagey-sessions/core/adapter-kit';

export const DEFAULT_PREFIX = 'cagey:user:';
const MAX_PREFIX_LENGTH = 128;

/**
 * Printable ASCII without spaces. Braces are refused because a `{...}` hash tag in the prefix would put every
 * user into one Cluster slot; glob characters are refused so `SCAN MATCH <prefix>*` lists exactly these keys.
 */
const PREFIX_CHARACTERS = /^[\x21-\x7e]+$/;
const REFUSED_IN_PREFIX = /[{}*?[\]\\]/;

/** Validates a key prefix; returns it as given. Throws INVALID_OPTIONS. */
export function checkPrefix(adapterName: string, prefix: unknown): string {
  if (
    typeof prefix === 'string' &&
    prefix.length > 0 &&
    prefix.length < MAX_PREFIX_LENGTH &&
    PREFIX_CHARACTERS.test(prefix) &&
    !REFUSED_IN_PREFIX.test(prefix)
  ) {
    return prefix;
  }
  throw invalidOptions(
    adapterName,
    `prefix ${JSON.stringify(String(prefix)).slice(0, 80)} must be 1 to ${MAX_PREFIX_LENGTH - 1} printable ` +
      `ASCII characters without spaces, braces or glob characters (* ? [ ] \\), e.g. "${DEFAULT_PREFIX}".`,
  );
}

/** What keys start with: the prefix, and a `:` after it when it does not end with one. */
export function keyPrefixOf(prefix: string): string {
  return prefix.endsWith(':') ? prefix : `${prefix}:`;
}

/**
 * The key part of a user: `userKey(userId)` percent-encoded (as `encodeURIComponent` does), so it never holds
 * `:`, braces or spaces. Because every key prefix ends with `:` and no user part holds one, a key names exactly
 * one prefix and one user: no userId can reach outside its prefix or collide with another user.
 */
export function encodeUserKey(key: string): string {
  try {
    return encodeURIComponent(key);
  } catch {
    return encodeWithLoneSurrogates(key);
  }
}

/**
 * `encodeURIComponent` refuses lone UTF-16 surrogates, which a JavaScript string (and so a userId) may hold.
 * They become `%uXXXX`, which `encodeURIComponent` never produces (`%` is always followed by two hex digits
 * there), so the mapping stays one-to-one.
 */
function encodeWithLoneSurrogates(key: string): string {
  let encoded = '';
  for (const character of key) {
    const code = character.charCodeAt(0);
    encoded +=
      character.length === 1 && code >= 0xd800 && code <= 0xdfff
        ? `%u${code.toString(16).toUpperCase().padStart(4, '0')}`
        : encodeURIComponent(character);
  }
  return encoded;
}

/**
 * The user key a key part names: the inverse of `encodeUserKey`, or `undefined` for a part it cannot have
 * produced (a key of another prefix that starts with this one's, e.g. `cagey:user:eu:…` under `cagey:user:`,
 * holds a `:`; a stray `%`).
 */
export function decodeUserKey(part: string): string | undefined {
  if (part === '' || part.includes(':')) return undefined;
  try {
    let key = '';
    for (const piece of part.split(/(%u[0-9A-F]{4})/)) {
      key += piece.startsWith('%u')
        ? String.fromCharCode(Number.parseInt(piece.slice(2), 16))
        : decodeURIComponent(piece);
    }
    return encodeUserKey(key) === part ? key : undefined;
  } catch {
    return undefined;
  }
}

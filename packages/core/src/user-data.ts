import { hash } from 'node:crypto';
import { ValidationError } from './errors.js';

/**
 * The longest user id every store accepts, in UTF-8 bytes. PostgreSQL's primary-key index refuses entries of
 * more than about 2.7 KB; 512 bytes leaves room for a key prefix and percent-encoding in every store.
 */
export const MAX_USER_ID_BYTES = 512;

/**
 * The storage key of a user: the decimal string of an integer id, the string itself otherwise, so `5` and `"5"`
 * name the same record. Throws INVALID_USER_ID for anything but a non-empty string (without NUL characters,
 * which several stores refuse, and at most `MAX_USER_ID_BYTES` UTF-8 bytes) or a safe integer.
 */
export function userKey(userId: unknown): string {
  if (typeof userId === 'string') {
    // Three bytes per UTF-16 unit at most, so short ids skip the byte count.
    const fits = userId.length * 3 <= MAX_USER_ID_BYTES || Buffer.byteLength(userId) <= MAX_USER_ID_BYTES;
    if (userId.length > 0 && fits && !userId.includes('\u0000')) return userId;
  } else if (typeof userId === 'number' && Number.isSafeInteger(userId)) {
    return String(userId);
  }
  throw new ValidationError(
    'INVALID_USER_ID',
    `Invalid userId ${describe(userId)}: expected a non-empty string without NUL characters of at most ` +
      `${MAX_USER_ID_BYTES} UTF-8 bytes, or a safe integer.`,
  );
}

/** Throws INVALID_VERSION unless `version` is absent or a non-negative safe integer. */
export function checkExpectedVersion(version: unknown): number | undefined {
  if (version === undefined) return undefined;
  if (typeof version === 'number' && Number.isSafeInteger(version) && version >= 0) return version;
  throw new ValidationError(
    'INVALID_VERSION',
    `Invalid expectedVersion ${describe(version)}: expected a non-negative safe integer, or nothing for an unconditional write.`,
  );
}

/**
 * Serialises user data to JSON text, refusing anything JSON cannot round-trip faithfully: BigInt, functions,
 * symbols, NaN and ±Infinity, `undefined` or holes in arrays, cycles, and objects that are not plain (Date, Map,
 * class instances), at any depth. `undefined` object properties are dropped, as JSON does. The root must be a
 * plain object. Throws INVALID_USER_DATA with the path of the first offending value.
 */
export function serializeUserData(userData: unknown): string {
  checkUserData(userData);
  return JSON.stringify(userData);
}

/** The checks of `serializeUserData` without the serialisation. */
export function checkUserData(userData: unknown): void {
  if (!isPlainObject(userData)) {
    throw invalid('', `the root must be a plain object, got ${describe(userData)}`);
  }
  // Every dirty session is checked before each write, so the common case (valid data) takes a walk that
  // builds no paths and tracks no ancestors; only data it cannot vouch for gets the walk that explains why.
  if (!isStorable(userData, 0)) checkValue(userData, '', new Set());
}

/**
 * Beyond this depth the quick walk gives up and the explaining walk decides; a cycle is found that way too,
 * since it nests without end.
 */
const QUICK_WALK_MAX_DEPTH = 64;

/** `checkValue` as a yes/no answer, without paths or cycle tracking. */
function isStorable(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object': {
      if (value === null) return true;
      if (depth === QUICK_WALK_MAX_DEPTH) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          if (item === undefined || !isStorable(item, depth + 1)) return false;
          // A hole reads as undefined, so every index that reaches this point holds a value.
        }
        return true;
      }
      if (!isPlainObject(value)) return false;
      for (const key in value) {
        const child = value[key];
        if (child !== undefined && !isStorable(child, depth + 1)) return false;
      }
      return Object.getOwnPropertySymbols(value).length === 0;
    }
    default:
      return false;
  }
}

/**
 * A short digest of serialised user data. Dirty tracking keeps this instead of a copy of the data, so an idle
 * session costs a few dozen bytes, not the size of its data again.
 */
export function digest(json: string): string {
  return hash('sha1', json, 'base64');
}

function checkValue(value: unknown, path: string, ancestors: Set<object>): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw invalid(path, `${value} is not representable in JSON`);
      return;
    case 'object': {
      if (value === null) return;
      if (ancestors.has(value)) throw invalid(path, 'it refers back to one of its parents (a cycle)');
      ancestors.add(value);
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          if (!(i in value) || value[i] === undefined) {
            throw invalid(
              `${path}[${i}]`,
              'arrays cannot hold undefined or holes (JSON would turn them into null)',
            );
          }
          checkValue(value[i], `${path}[${i}]`, ancestors);
        }
      } else if (isPlainObject(value)) {
        for (const key in value) {
          const child = (value as Record<string, unknown>)[key];
          if (child !== undefined) checkValue(child, path === '' ? key : `${path}.${key}`, ancestors);
        }
        if (Object.getOwnPropertySymbols(value).length > 0) {
          throw invalid(path, 'symbol-keyed properties cannot be stored');
        }
      } else {
        throw invalid(
          path,
          `${value.constructor?.name ?? 'object'} is not a plain object or array; convert it (e.g. a Date to an ISO string)`,
        );
      }
      ancestors.delete(value);
      return;
    }
    case 'undefined':
      throw invalid(path, 'undefined is not representable in JSON');
    default:
      throw invalid(path, `a ${typeof value} is not representable in JSON`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function invalid(path: string, reason: string): ValidationError {
  const where = path === '' ? 'userData' : `userData.${path}`;
  return new ValidationError('INVALID_USER_DATA', `Cannot store ${where}: ${reason}.`, { path });
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object') return value === null ? 'null' : (value.constructor?.name ?? 'object');
  return String(value);
}

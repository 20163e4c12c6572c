import { ValidationError } from '../errors.js';
import { checkOptionKeys, invalidOptions } from './options.js';

/** What `scan` was asked for, checked: where to go on (undefined: from the start) and the page size. */
export interface ScanRequest<Position> {
  position: Position | undefined;
  limit: number;
}

/**
 * Reads `scan`'s options: `limit` a positive integer (default `defaultLimit`; above `maxLimit` it is lowered
 * to `maxLimit`, a limit being a hint), and `cursor` one that `encodeCursor` made for this adapter, whose
 * position `readPosition` accepts (it returns `undefined` for a position it cannot use). Throws
 * INVALID_OPTIONS for a bad limit or an unknown option, INVALID_CURSOR for a cursor that is not one of this
 * adapter's.
 */
export function parseScanOptions<Position>(
  adapterName: string,
  options: unknown,
  {
    defaultLimit,
    maxLimit,
    readPosition,
  }: { defaultLimit: number; maxLimit: number; readPosition: (position: unknown) => Position | undefined },
): ScanRequest<Position> {
  const given = options ?? {};
  checkOptionKeys(adapterName, given, ['cursor', 'limit']);
  const { cursor, limit } = given as { cursor?: unknown; limit?: unknown };
  let pageSize = defaultLimit;
  if (limit !== undefined) {
    if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
      const shown = typeof limit === 'string' ? JSON.stringify(limit.slice(0, 40)) : String(limit);
      throw invalidOptions(adapterName, `scan limit must be a positive integer (got ${shown}).`);
    }
    pageSize = Math.min(limit, maxLimit);
  }
  if (cursor === undefined) return { position: undefined, limit: pageSize };
  const position = decodeCursor(adapterName, cursor);
  const read = position === undefined ? undefined : readPosition(position);
  if (read === undefined) throw invalidCursor(adapterName);
  return { position: read, limit: pageSize };
}

/** Version of the cursor format, so a cursor from another release is refused rather than misread. */
const CURSOR_FORMAT = 1;

/**
 * An opaque cursor for `position` (any JSON value): base64url JSON naming the adapter, so that a cursor of
 * another adapter, or one that was altered, is refused by `parseScanOptions` rather than misread.
 */
export function encodeCursor(adapterName: string, position: unknown): string {
  return Buffer.from(JSON.stringify([CURSOR_FORMAT, adapterName, position])).toString('base64url');
}

function decodeCursor(adapterName: string, cursor: unknown): unknown {
  if (typeof cursor !== 'string' || cursor === '' || !/^[A-Za-z0-9_-]+$/.test(cursor)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed) || parsed.length !== 3) return undefined;
  const [format, adapter, position] = parsed as unknown[];
  if (format !== CURSOR_FORMAT || adapter !== adapterName || position === undefined) return undefined;
  return position;
}

function invalidCursor(adapterName: string): ValidationError {
  return new ValidationError(
    'INVALID_CURSOR',
    `[${adapterName}] Invalid scan cursor: pass the cursor of the previous page of this adapter unchanged, ` +
      'or none to start the listing again.',
  );
}

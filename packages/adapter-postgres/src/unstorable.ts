import { ValidationError } from '@cagey-sessions/core';
import { RECORD_SEPARATOR } from './sql.js';

/**
 * Finds what PostgreSQL's jsonb refuses in JSON text that is otherwise valid: the escape `\u0000` (jsonb cannot
 * hold the NUL character) and an escaped lone UTF-16 surrogate (`JSON.stringify` escapes those; jsonb wants
 * well-formed Unicode). Also refuses a raw record separator, which valid JSON text cannot contain and which
 * would break the batch framing. Returns a reason, or undefined when the text can be sent.
 *
 * Costs one `indexOf` for ordinary data: JSON.stringify only writes `\u` escapes for rare control characters
 * and lone surrogates.
 */
export function findUnstorable(json: string): string | undefined {
  if (json.includes(RECORD_SEPARATOR)) return 'it contains a raw control character, which is not valid JSON';
  let at = json.indexOf('\\u');
  while (at !== -1) {
    // `\u` is an escape only when the backslash itself is not escaped: an odd run of backslashes.
    let run = 1;
    while (at - run >= 0 && json.charCodeAt(at - run) === 0x5c) run++;
    if (run % 2 === 1) {
      const unit = Number.parseInt(json.slice(at + 2, at + 6), 16);
      if (unit === 0) return 'PostgreSQL jsonb cannot store the NUL character (\\u0000) in strings or keys';
      if (unit >= 0xd800 && unit <= 0xdbff) {
        const next = json.startsWith('\\u', at + 6) ? Number.parseInt(json.slice(at + 8, at + 12), 16) : -1;
        if (!(next >= 0xdc00 && next <= 0xdfff)) return loneSurrogate;
        at = json.indexOf('\\u', at + 12);
        continue;
      }
      if (unit >= 0xdc00 && unit <= 0xdfff) return loneSurrogate;
    }
    at = json.indexOf('\\u', at + 2);
  }
  return undefined;
}

const loneSurrogate = 'PostgreSQL jsonb cannot store a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff)';

/** The error result for a record the database would refuse, naming where the value sits when it can. */
export function unstorableError(adapterName: string, json: string, reason: string): ValidationError {
  const path = locate(json);
  const where = path === undefined || path === '' ? 'userData' : `userData.${path}`;
  return new ValidationError(
    'INVALID_USER_DATA',
    `[${adapterName}] Cannot store ${where}: ${reason}. Remove or replace that character; only this record was refused, the rest of the batch is unaffected.`,
    path === undefined ? {} : { path },
  );
}

/** The path of the first string or key holding a NUL or lone surrogate; only called for a refused record. */
function locate(json: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  const bad = (text: string) => text.includes('\u0000') || /\p{Cs}/u.test(text);
  const visit = (node: unknown, path: string): string | undefined => {
    if (typeof node === 'string') return bad(node) ? path : undefined;
    if (typeof node !== 'object' || node === null) return undefined;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const found = visit(node[i], `${path}[${i}]`);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    for (const [key, child] of Object.entries(node)) {
      const childPath = path === '' ? key : `${path}.${key}`;
      if (bad(key)) return childPath;
      const found = visit(child, childPath);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  return visit(value, '');
}

/**
 * A request predicate for `cutAfterReply`: true when the bytes contain `text` (UTF-8). With `ignoreCase`, ASCII
 * letters match either case, e.g. `matchesText('SET', { ignoreCase: true })` for ioredis, which sends command
 * names in lower case. Prefer a text that only the request under test contains (a unique key, a table name).
 */
export function matchesText(
  text: string,
  options: { ignoreCase?: boolean } = {},
): (chunk: Buffer) => boolean {
  if (text.length === 0) throw new RangeError('matchesText needs a non-empty text');
  if (!options.ignoreCase) {
    const needle = Buffer.from(text, 'utf8');
    return (chunk) => chunk.includes(needle);
  }
  const needle = asciiLowerCase(Buffer.from(text, 'utf8'));
  return (chunk) => asciiLowerCase(chunk).includes(needle);
}

function asciiLowerCase(bytes: Buffer): Buffer {
  const lower = Buffer.from(bytes);
  for (let i = 0; i < lower.length; i++) {
    const byte = lower[i]!;
    if (byte >= 0x41 && byte <= 0x5a) lower[i] = byte + 0x20;
  }
  return lower;
}

const READY_FOR_QUERY = 0x5a; // 'Z'
const IDLE = 0x49; // 'I': not in a transaction block

/**
 * A `replyComplete` for PostgreSQL: true when `reply` is a sequence of whole backend messages (type byte, int32
 * length that counts itself) whose last one is ReadyForQuery with status idle (`Z`, length 5, `I`). Only then is
 * the request's transaction known to be committed (or, for an error, rolled back). False for a partial message,
 * a reply ending in any other message, or ReadyForQuery inside a transaction block (`T`) or a failed one (`E`).
 */
export function postgresReplyComplete(reply: Buffer): boolean {
  let offset = 0;
  let last = -1;
  // Each step moves `offset` forward by at least 5 bytes, so the loop ends.
  while (offset < reply.length) {
    if (offset + 5 > reply.length) return false;
    const length = reply.readInt32BE(offset + 1);
    if (length < 4) return false;
    const end = offset + 1 + length;
    if (end > reply.length) return false;
    last = offset;
    offset = end;
  }
  return (
    last >= 0 &&
    reply[last] === READY_FOR_QUERY &&
    reply.readInt32BE(last + 1) === 5 &&
    reply[last + 5] === IDLE
  );
}

import { isNodeId, userKey } from '@cagey-sessions/core/adapter-kit';
import { encodeUserKey, keyPrefixOf } from './keys.js';

/** An incarnation's token: 32 lowercase hex digits (128 random bits), so a token is never issued twice. */
const TOKEN = /^[0-9a-f]{32}$/;

/** Who holds a user: a node and the incarnation of it that claimed the user. */
export interface Holder {
  nodeId: string;
  token: string;
}

/** User keys fall into this many buckets, each one hash tag (one Cluster slot). */
export const USER_BUCKETS = 256;

/**
 * Names of the presence's keys and channels, all below one prefix:
 * - `<prefix>node:<node id>`: a node's lease, holding its current incarnation's token, with a TTL;
 * - `<prefix>user:{<bucket>}:<user key>`: who holds a user, `<token>:<node id>`, without a TTL;
 * - channel `<prefix>messages:<node id>`: messages to a node.
 * Ids are percent-encoded as the adapter encodes user keys, so they never hold `:`, braces or spaces: a key
 * names one kind and one id. The bucket (two hex digits, a hash of the user key) is the key's only hash tag: a
 * release of thousands of users is one script call per bucket instead of one per slot (on a Cluster, 10,000
 * users span about 7,500 slots), while the 256 buckets still spread over every master.
 */
export class PresenceKeys {
  readonly #prefix: string;

  constructor(prefix: string) {
    this.#prefix = keyPrefixOf(prefix);
  }

  lease(nodeId: string): string {
    return `${this.#prefix}node:${encodeUserKey(nodeId)}`;
  }

  user(userId: string): string {
    const encoded = encodeUserKey(userKey(userId));
    return `${this.#prefix}user:{${bucketOf(encoded)}}:${encoded}`;
  }

  channel(nodeId: string): string {
    return `${this.#prefix}messages:${encodeUserKey(nodeId)}`;
  }
}

/** The bucket of an encoded user key: 32-bit FNV-1a of its characters (ASCII after encoding), two hex digits. */
function bucketOf(encoded: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < encoded.length; i++) {
    hash ^= encoded.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return ((hash >>> 0) % USER_BUCKETS).toString(16).padStart(2, '0');
}

/** A user record's value: the token first (fixed length), then the node id, which may hold `:`. */
export function encodeHolder({ token, nodeId }: Holder): string {
  return `${token}:${nodeId}`;
}

/** The holder a user record names; `undefined` for a value the presence did not write. */
export function parseHolder(value: string): Holder | undefined {
  const token = value.slice(0, 32);
  const nodeId = value.slice(33);
  if (!TOKEN.test(token) || value[32] !== ':' || !isNodeId(nodeId)) return undefined;
  return { token, nodeId };
}

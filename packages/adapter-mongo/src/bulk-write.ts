import { randomBytes } from 'node:crypto';
import { AdapterError, type SaveResult, type UserId } from '@cagey-sessions/core';
import {
  chunkByCountAndSize,
  decideRestore,
  decideWrite,
  describeUserId,
  type PreparedRecord,
  type PreparedRestoreRecord,
  type StoredVersion,
} from '@cagey-sessions/core/adapter-kit';
import { type AnyBulkWriteOperation, type Collection, MongoBulkWriteError } from 'mongodb';
import { NEVER_WRITTEN, readStoredVersions, toDocumentData, type UserDocument } from './documents.js';

/** Rounds of a save (or a delete) before a record that keeps losing races gets an error result. */
export const MAX_ROUNDS = 10;
const DUPLICATE_KEY = 11000;
/**
 * Marks the write ids the adapter makes up for records that carry none. `~` is outside the characters a caller's
 * write id may use, so the two never collide, and a made-up one is never reported as `currentWriteId`.
 */
const INTERNAL_WRITE_ID = '~';

/** What `writeRecords` needs from the adapter. */
export interface WriteContext {
  adapterName: string;
  /** `Infinity` when unlimited. */
  maxUpdatesPerBulkWrite: number;
  /** The collection, opened when a record gets this far (a save whose records all fail validation opens nothing). */
  open(): Promise<Collection<UserDocument>>;
  /** A driver error as the adapter reports it, its passwords removed. */
  wrap(operation: string, error: unknown): Error;
}

/** How a record's next write attempt writes it, from the stored state it assumes. */
type Plan =
  | { kind: 'insert' }
  /** A live document at version `from`. */
  | { kind: 'update'; from: number }
  /** A tombstone at version `from`. */
  | { kind: 'revive'; from: number };

interface Pending {
  /** Position in the list `writeRecords` was given. */
  slot: number;
  userId: UserId;
  key: string;
  data: Record<string, unknown>;
  /** The caller's expectedVersion; undefined for an unconditional write (and for a restore). */
  expected: number | undefined;
  /** A restore: the exact version to store (where the stored one is older); undefined for a save. */
  restoring: number | undefined;
  plan: Plan;
  /** Stored with every attempt of this record: the record's own write id, else one the adapter made up. */
  writeId: string;
  /** Send in a bulkWrite of its own: it was in a bulkWrite that a write error cut short (see `send`). */
  alone: boolean;
}

type Outcome = { kind: 'ok' } | { kind: 'error'; error: Error } | { kind: 'unknown' } | { kind: 'suspect' };

/**
 * Writes validated records. Each round sends one operation per pending record (in one unordered bulkWrite,
 * or in chunks of `maxUpdatesPerBulkWrite` updates), then learns each record's outcome:
 * - the inserts and the updates all succeeded when the bulkWrite's inserted and matched counts say so (the
 *   common case: one round trip in all);
 * - otherwise one `find` reads the stored versions and `writeId`s, which tell apart "written by us",
 *   "conflict" and "not written yet" (a duplicate key, a server that stops a bulk at its first error, a
 *   connection lost in the middle of a bulkWrite: see `send`).
 * Records that need another attempt (a tombstone to revive, an unconditional write that lost a race, a write
 * that never reached the server) go to the next round, under the same write id. Nothing is retried blindly:
 * a conditional write that finds another version is a conflict, and nothing is reported written that the
 * server did not confirm or the read did not find.
 */
export async function writeRecords(
  prepared: (PreparedRecord | PreparedRestoreRecord)[],
  context: WriteContext,
): Promise<SaveResult[]> {
  const operation = prepared.some((record) => 'version' in record) ? 'restore' : 'save';
  const results: (SaveResult | undefined)[] = new Array(prepared.length);
  const batchId = randomBytes(6).toString('base64url');
  let pending: Pending[] = [];
  for (let slot = 0; slot < prepared.length; slot++) {
    const record = prepared[slot]!;
    let data: Record<string, unknown>;
    try {
      data = toDocumentData(record.json);
    } catch (error) {
      results[slot] = { status: 'error', error: error as Error };
      continue;
    }
    const expected = 'expectedVersion' in record ? record.expectedVersion : undefined;
    const restoring = 'version' in record ? record.version : undefined;
    // A conditional write is first sent for the state it expects: none (0), or a live document at its version.
    const plan: Plan =
      expected === undefined || expected === 0 ? { kind: 'insert' } : { kind: 'update', from: expected };
    pending.push({
      slot,
      userId: record.userId,
      key: record.key,
      data,
      expected,
      restoring,
      plan,
      writeId: record.writeId ?? `${INTERNAL_WRITE_ID}${batchId}.${slot}`,
      alone: false,
    });
  }
  if (pending.length === 0) return results as SaveResult[];

  const collection = await context.open();
  const unconditional = pending.filter((entry) => entry.expected === undefined);
  if (unconditional.length > 0) {
    // An unconditional write still reports the version it made, so it writes conditionally on what it read;
    // a restore writes only over an older version, so it reads first too, and needs no write for a conflict.
    const states = await readStoredVersions(
      collection,
      unconditional.map((entry) => entry.key),
    );
    const writing: Pending[] = [];
    for (const entry of pending) {
      if (entry.expected !== undefined) {
        writing.push(entry);
        continue;
      }
      const stored = states.get(entry.key) ?? NEVER_WRITTEN;
      const refused = entry.restoring === undefined ? undefined : conflictOf(entry, stored);
      if (refused === undefined) {
        entry.plan = planFor(stored);
        writing.push(entry);
      } else {
        results[entry.slot] = refused;
      }
    }
    pending = writing;
  }

  for (let round = 0; round < MAX_ROUNDS && pending.length > 0; round++) {
    const outcome = await send(collection, pending, new Date(), round === 0, operation, context);

    const toRead: Pending[] = [];
    for (let i = 0; i < pending.length; i++) {
      const entry = pending[i]!;
      const status = outcome[i]!;
      if (status.kind === 'ok') results[entry.slot] = { status: 'ok', version: newVersion(entry) };
      else if (status.kind === 'error') results[entry.slot] = { status: 'error', error: status.error };
      else {
        entry.alone = status.kind === 'suspect';
        toRead.push(entry);
      }
    }
    if (toRead.length === 0) {
      pending = [];
      break;
    }

    let states: Map<string, StoredVersion>;
    try {
      states = await readStoredVersions(
        collection,
        toRead.map((entry) => entry.key),
      );
    } catch (error) {
      // Some of these may have been written, but nothing proves it: they fail, each with its own result.
      const wrapped = context.wrap(`${operation} (reading back writes whose outcome is unknown)`, error);
      for (const entry of toRead) results[entry.slot] = { status: 'error', error: wrapped };
      pending = [];
      break;
    }
    const next: Pending[] = [];
    for (const entry of toRead) {
      const decided = decide(entry, states.get(entry.key) ?? NEVER_WRITTEN);
      if (decided === undefined) next.push(entry);
      else results[entry.slot] = decided;
    }
    pending = next;
  }
  for (const entry of pending) {
    results[entry.slot] = {
      status: 'error',
      error: new AdapterError(
        context.adapterName,
        `${operation} of user ${describeUserId(entry.userId)} lost ${MAX_ROUNDS} races with concurrent writers; retry it.`,
      ),
    };
  }
  return results as SaveResult[];
}

/**
 * Sends one operation per pending record and classifies each: ok, error, unknown (needs a read) or suspect
 * (unknown, and in a bulkWrite cut short by an update's write error). Throws only when the first bulkWrite of
 * the first round fails before anything is sent, so that a rejected save wrote nothing.
 *
 * An operation is ok only when the server confirmed it: the bulkWrite's inserted (matched) count equals the
 * number of inserts (updates) that have no write error of their own. The counts cover exactly the commands
 * the server answered, so a bulkWrite cut short by a lost connection or a server gone away (the driver then
 * throws a `MongoBulkWriteError` without write errors) leaves the operations of the unanswered command
 * unknown, to be read back. A write concern error makes every operation without an error of its own unknown:
 * the counts it comes with do not say the writes will stay.
 *
 * A write error's index is exact on MongoDB, which also carries on with the other operations of an unordered
 * bulkWrite. FerretDB 1.x stops an update command at its first failing statement and reports index 0, so an
 * update error only makes its bulkWrite's updates unknown; the ones still unwritten are then sent one per
 * bulkWrite, where an error can only be their own.
 */
async function send(
  collection: Collection<UserDocument>,
  pending: Pending[],
  updatedAt: Date,
  mayThrow: boolean,
  operation: string,
  context: WriteContext,
): Promise<Outcome[]> {
  const outcome: Outcome[] = new Array(pending.length);
  const chunks = chunksOf(pending, context.maxUpdatesPerBulkWrite);
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c]!;
    const operations = chunk.map((i) => operationFor(pending[i]!, updatedAt));
    let inserted: number;
    let matched: number;
    let countsHold = true;
    const errors = new Map<number, Error>();
    try {
      const result = await collection.bulkWrite(operations, { ordered: false });
      inserted = result.insertedCount;
      matched = result.matchedCount;
    } catch (error) {
      if (!(error instanceof MongoBulkWriteError)) {
        // Thrown before any command was sent (no connection yet, an invalid operation): nothing was written.
        if (mayThrow && c === 0) throw error;
        // Earlier bulkWrites were written; this one's records fail on their own.
        const wrapped = context.wrap(operation, error);
        for (const i of chunk) outcome[i] = { kind: 'error', error: wrapped };
        continue;
      }
      inserted = countOf(error, 'insertedCount');
      matched = countOf(error, 'matchedCount');
      countsHold = !hasWriteConcernError(error);
      for (const writeError of writeErrorsOf(error)) {
        errors.set(writeError.index, writeErrorOf(context.adapterName, writeError));
      }
    }
    let inserts = 0;
    let updates = 0;
    let updateFailed = false;
    for (let j = 0; j < chunk.length; j++) {
      const i = chunk[j]!;
      const error = errors.get(j);
      if (pending[i]!.plan.kind === 'insert') {
        // Inserts are checked one by one on every server, so an insert's error is its own.
        if (error === undefined) {
          inserts++;
          outcome[i] = { kind: 'ok' };
        } else if (isDuplicateKey(error)) outcome[i] = { kind: 'unknown' };
        else outcome[i] = { kind: 'error', error };
      } else if (error !== undefined && chunk.length === 1) {
        outcome[i] = { kind: 'error', error };
      } else if (error !== undefined) {
        updateFailed = true;
        outcome[i] = { kind: 'unknown' };
      } else {
        updates++;
        outcome[i] = { kind: 'ok' };
      }
    }
    if (!countsHold || inserted < inserts) {
      // Which inserts were written is not in a bulkWrite's result: all of them are read.
      for (const i of chunk) {
        if (pending[i]!.plan.kind === 'insert' && outcome[i]!.kind === 'ok') outcome[i] = { kind: 'unknown' };
      }
    }
    if (!countsHold || updateFailed || matched < updates) {
      // Which updates matched is not in a bulkWrite's result either.
      for (const i of chunk) {
        if (pending[i]!.plan.kind === 'insert') continue;
        if (updateFailed) outcome[i] = { kind: 'suspect' };
        else if (outcome[i]!.kind === 'ok') outcome[i] = { kind: 'unknown' };
      }
    }
  }
  return outcome;
}

/**
 * The bulkWrites of a round, as positions in `pending`: at most `maxUpdates` updates each (inserts are not
 * counted), and a bulkWrite of its own for each record marked `alone`.
 */
function chunksOf(pending: Pending[], maxUpdates: number): number[][] {
  const together: number[] = [];
  const alone: number[][] = [];
  for (let i = 0; i < pending.length; i++) {
    if (pending[i]!.alone) alone.push([i]);
    else together.push(i);
  }
  const updatesOf = (i: number) => (pending[i]!.plan.kind === 'insert' ? 0 : 1);
  const chunks = chunkByCountAndSize(together, updatesOf, {
    maxCount: Number.POSITIVE_INFINITY,
    maxSize: maxUpdates,
  });
  return [...chunks, ...alone];
}

function operationFor(entry: Pending, updatedAt: Date): AnyBulkWriteOperation<UserDocument> {
  const { key, data, plan, writeId } = entry;
  const version = newVersion(entry);
  switch (plan.kind) {
    case 'insert':
      return { insertOne: { document: { _id: key, data, version, updatedAt, writeId } } };
    case 'update':
      return {
        updateOne: {
          filter: { _id: key, version: plan.from, deleted: { $ne: true } },
          // `data` is replaced whole as a value: its keys were checked, and a $set value is never an operator.
          update: { $set: { data, version, updatedAt, writeId } },
        },
      };
    case 'revive':
      return {
        updateOne: {
          filter: { _id: key, version: plan.from, deleted: true },
          update: { $set: { data, version, updatedAt, writeId }, $unset: { deleted: '' } },
        },
      };
  }
}

/** The version a write of `entry` stores: a restore's own, else the next after what its plan expects. */
function newVersion(entry: Pending): number {
  if (entry.restoring !== undefined) return entry.restoring;
  return entry.plan.kind === 'insert' ? 1 : entry.plan.from + 1;
}

/** The write over `stored`, conditioned on it: an insert where no document is, else an update or a revival. */
function planFor(stored: StoredVersion): Plan {
  if (!stored.live && stored.version === 0) return { kind: 'insert' };
  return { kind: stored.live ? 'update' : 'revive', from: stored.version };
}

/**
 * The result of a record whose write did not plainly succeed, given the stored state read afterwards; undefined
 * when it needs another round (with `entry.plan` updated). A record found stored under its own write id was
 * written by this save (perhaps by an attempt whose answer was lost): its result is the stored version.
 * Otherwise `decideWrite` rules: a record it allows is sent again over what is stored (an update still at the
 * expected version never ran, e.g. on a server that stopped the bulk early or a command that never reached it;
 * a new player meets a tombstone; an unconditional write lost a race); one it refuses is a conflict. (If ours
 * was applied and then overwritten before this read, that is a conflict too: the stored data is someone
 * else's either way.)
 */
function decide(entry: Pending, stored: StoredVersion): SaveResult | undefined {
  if (stored.live && stored.writeId === entry.writeId) return { status: 'ok', version: stored.version };
  const refused = conflictOf(entry, stored);
  if (refused !== undefined) return refused;
  entry.plan = planFor(stored);
  return undefined;
}

/**
 * The conflict `entry` meets over `stored`, by `decideRestore` for a restore (an equal or newer version, live
 * or tombstone) and `decideWrite` for a save; undefined when it is to be written.
 */
function conflictOf(entry: Pending, stored: StoredVersion): SaveResult | undefined {
  const decision =
    entry.restoring === undefined
      ? decideWrite(entry.expected, stored)
      : decideRestore(entry.restoring, stored);
  if (decision.write) return undefined;
  return {
    status: 'conflict',
    currentVersion: decision.currentVersion,
    currentWriteId: callerWriteId(decision.currentWriteId),
  };
}

/** A stored write id as the caller knows it: the ones the adapter made up are not reported. */
function callerWriteId(writeId: string | undefined): string | undefined {
  return typeof writeId === 'string' && !writeId.startsWith(INTERNAL_WRITE_ID) ? writeId : undefined;
}

/** A count from the result a `MongoBulkWriteError` carries: what the commands the server answered did. */
function countOf(error: MongoBulkWriteError, count: 'insertedCount' | 'matchedCount'): number {
  const value = (error.result as Partial<Record<typeof count, unknown>> | undefined)?.[count];
  return typeof value === 'number' ? value : 0;
}

/** The per-operation errors of every command the server answered (also when a later one failed as a whole). */
function writeErrorsOf(error: MongoBulkWriteError): { code: number; errmsg?: string; index: number }[] {
  const fromResult = error.result?.getWriteErrors?.();
  if (Array.isArray(fromResult) && fromResult.length > 0) return fromResult;
  const own = error.writeErrors as unknown;
  if (Array.isArray(own)) return own;
  return own === undefined || own === null ? [] : [own as { code: number; errmsg?: string; index: number }];
}

function hasWriteConcernError(error: MongoBulkWriteError): boolean {
  return (
    error.err !== undefined ||
    error.writeConcernError !== undefined ||
    error.result?.getWriteConcernError?.() !== undefined
  );
}

function writeErrorOf(
  adapterName: string,
  writeError: { code: number; errmsg?: string; index: number },
): Error {
  // Servers may quote the whole rejected value (FerretDB does): keep the message readable in a log line.
  let message = writeError.errmsg ?? 'write error';
  if (message.length > 300) message = `${message.slice(0, 300)}…`;
  return new AdapterError(
    adapterName,
    `the server rejected this record (code ${writeError.code}): ${message}`,
    {
      cause: writeError,
    },
  );
}

function isDuplicateKey(error: Error): boolean {
  return (error.cause as { code?: unknown } | undefined)?.code === DUPLICATE_KEY;
}

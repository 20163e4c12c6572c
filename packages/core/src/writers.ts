import { type BatchMessage, batchChannel, traced } from './channels.js';
import { callAdapter } from './deadline.js';
import type { Snapshot } from './dirty-tracker.js';
import { describeUserId, PersistenceError, toError } from './errors.js';
import type { PersistenceAdapter, SaveRecord, UserId } from './types.js';
import type { UserState } from './user-state.js';

/** One user's write within a batch, as the write queue hands it to a writer. */
export interface Entry<Owner> {
  readonly state: UserState<Owner>;
  /** The state's generation when the entry was made: a write of older data must not update newer bookkeeping. */
  readonly generation: number;
  readonly expectedVersion: number | undefined;
  readonly writeId: string;
  /** What was (or is to be) sent; taken by `prepare`. */
  snapshot: Snapshot | undefined;
}

/**
 * A write's outcome: `unchanged` when nothing needed writing; `ok` without a version when listeners, not an
 * adapter, did the writing; an error that `reachedStore` may have been written anyway (its acknowledgement
 * lost).
 */
export type Outcome =
  | { status: 'unchanged' }
  | { status: 'ok'; version: number | undefined }
  | { status: 'conflict'; currentVersion: number; currentWriteId?: string | undefined }
  | { status: 'error'; error: Error; reachedStore: boolean };

/** What the write queue lends a writer for one batch. */
export interface BatchTools<Owner> {
  /**
   * Takes each entry's snapshot and sorts out the entries that need no write: resolves with an outcome per
   * entry that is settled already (data unchanged, or data that cannot be stored) and the entries left to
   * write. Yields to the event loop as it goes.
   */
  prepare(
    entries: readonly Entry<Owner>[],
  ): Promise<{ settled: Map<Entry<Owner>, Outcome>; toWrite: Entry<Owner>[] }>;
  /**
   * Emits `persistUserData` for each entry and waits for the listeners: per entry, whether anybody listened
   * and the listeners' error, if any.
   */
  emit(entries: readonly Entry<Owner>[]): Promise<Map<Entry<Owner>, { listened: boolean; error?: Error }>>;
  /**
   * A store call given up on after `callTimeout` is still running in the driver: the batch keeps its place
   * among the `concurrency` calls in flight until it settles (or one more `callTimeout` passes), so that a
   * stalled store is not sent ever more calls that all arrive at once when it wakes up.
   */
  abandoned(pending: Promise<unknown>): void;
}

/** Gets a batch of users' data into the store: an adapter, or (in the original API) the listeners. */
export interface Writer {
  /** Resolves one outcome per entry, in order. Never rejects. */
  write<Owner>(batch: readonly Entry<Owner>[], tools: BatchTools<Owner>): Promise<Outcome[]>;
}

/**
 * Writes through an adapter. `persistUserData` listeners run first, so they may finalise the data; then the
 * changed users go to `adapter.save` in one call, bounded by `callTimeout`, and every result is checked.
 */
export class AdapterWriter implements Writer {
  readonly #adapter: PersistenceAdapter;
  readonly #callTimeout: number;
  readonly #source: object;

  constructor(adapter: PersistenceAdapter, callTimeout: number, source: object) {
    this.#adapter = adapter;
    this.#callTimeout = callTimeout;
    this.#source = source;
  }

  async write<Owner>(batch: readonly Entry<Owner>[], tools: BatchTools<Owner>): Promise<Outcome[]> {
    const listeners = await tools.emit(batch);
    const failed = new Map<Entry<Owner>, Outcome>();
    for (const entry of batch) {
      const { listened, error } = listeners.get(entry)!;
      if (error !== undefined) failed.set(entry, { status: 'error', error, reachedStore: false });
      // Listeners may have finalised the data: a snapshot taken before them is stale.
      else if (listened) entry.snapshot = undefined;
    }
    const { settled, toWrite } = await tools.prepare(batch.filter((entry) => !failed.has(entry)));
    const saved =
      toWrite.length === 0
        ? []
        : await traced(
            batchChannel,
            (): BatchMessage => ({
              manager: this.#source,
              adapter: this.#adapter.name,
              size: toWrite.length,
            }),
            async (message) => {
              const outcomes = await this.#save(toWrite, tools);
              if (message !== undefined) message.outcomes = countOutcomes(outcomes);
              return outcomes;
            },
          );
    const outcomes = new Map<Entry<Owner>, Outcome>([...failed, ...settled]);
    for (const [i, entry] of toWrite.entries()) outcomes.set(entry, saved[i]!);
    return batch.map((entry) => outcomes.get(entry)!);
  }

  /**
   * One `adapter.save` call for the entries. A call that throws, rejects, times out or answers with the wrong
   * shape becomes an error outcome for its entries: nothing escapes.
   */
  async #save<Owner>(entries: readonly Entry<Owner>[], tools: BatchTools<Owner>): Promise<Outcome[]> {
    const adapter = this.#adapter;
    const records: SaveRecord[] = entries.map((entry) => ({
      userId: entry.state.userId,
      userData: entry.state.userData,
      json: entry.snapshot!.json,
      expectedVersion: entry.expectedVersion,
      writeId: entry.writeId,
    }));
    let saved: unknown;
    try {
      saved = await callAdapter(
        adapter.name,
        'save',
        this.#callTimeout,
        () => adapter.save(records),
        tools.abandoned,
      );
    } catch (error) {
      const failure: Outcome = {
        status: 'error',
        error: toError(error),
        reachedStore: mayHaveReachedStore(error),
      };
      return entries.map(() => failure);
    }
    if (!Array.isArray(saved) || saved.length !== records.length) {
      const count = Array.isArray(saved) ? `${saved.length} results` : describeValue(saved);
      const error = contractError(adapter, `returned ${count} for ${records.length} records`);
      return entries.map(() => ({ status: 'error', error, reachedStore: true }));
    }
    return saved.map((result) => checkResult(adapter, result));
  }
}

/**
 * The original API's writer: without an adapter, `persistUserData` listeners are the write. They are handed
 * the data as it was when the batch was prepared; a listener's error fails that user's write, and a change
 * that no listener takes is refused with NO_WRITER, never counted as written.
 */
export class ListenerWriter implements Writer {
  async write<Owner>(batch: readonly Entry<Owner>[], tools: BatchTools<Owner>): Promise<Outcome[]> {
    const { settled, toWrite } = await tools.prepare(batch);
    const listeners = await tools.emit(toWrite);
    return batch.map((entry): Outcome => {
      const done = settled.get(entry);
      if (done !== undefined) return done;
      const { listened, error } = listeners.get(entry)!;
      if (error !== undefined) return { status: 'error', error, reachedStore: false };
      if (!listened)
        return { status: 'error', error: noWriterError(entry.state.userId), reachedStore: false };
      return { status: 'ok', version: undefined };
    });
  }
}

function countOutcomes(outcomes: readonly Outcome[]): { ok: number; conflict: number; error: number } {
  const counts = { ok: 0, conflict: 0, error: 0 };
  for (const outcome of outcomes) if (outcome.status !== 'unchanged') counts[outcome.status]++;
  return counts;
}

/** Codes of failures that happen before a request leaves: nothing of the batch was sent. */
const NOT_SENT_CODES: ReadonlySet<unknown> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ADAPTER_CLOSED',
]);

/**
 * Whether a rejected `save` may have written anything. The contract only says nothing may be assumed
 * written, so every failure counts as "maybe", except those whose code (on the error or in its cause chain)
 * says the request never left.
 */
function mayHaveReachedStore(error: unknown): boolean {
  let current = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if (NOT_SENT_CODES.has((current as { code?: unknown }).code)) return false;
    current = (current as { cause?: unknown }).cause;
  }
  return true;
}

function noWriterError(userId: UserId): PersistenceError {
  return new PersistenceError(
    'NO_WRITER',
    `User ${describeUserId(userId)} has changes but nothing can store them: the session manager has no adapter ` +
      "and no 'persistUserData' listener. Pass { adapter } to create(), or listen to 'persistUserData'.",
  );
}

function contractError(adapter: PersistenceAdapter, what: string): PersistenceError {
  return new PersistenceError(
    'ADAPTER_CONTRACT',
    `Adapter "${adapter.name}" broke the PersistenceAdapter contract: save() ${what}.`,
  );
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/** One `save` result, checked: anything but a well-formed result is a contract violation of that record. */
function checkResult(adapter: PersistenceAdapter, result: unknown): Outcome {
  const r = result as Partial<
    Record<'status' | 'version' | 'currentVersion' | 'currentWriteId' | 'error', unknown>
  >;
  const isVersion = (value: unknown, min: number) =>
    typeof value === 'number' && Number.isSafeInteger(value) && value >= min;
  if (typeof result === 'object' && result !== null) {
    if (r.status === 'ok' && isVersion(r.version, 1)) return { status: 'ok', version: r.version as number };
    if (
      r.status === 'conflict' &&
      isVersion(r.currentVersion, 0) &&
      (r.currentWriteId === undefined || r.currentWriteId === null || typeof r.currentWriteId === 'string')
    ) {
      return {
        status: 'conflict',
        currentVersion: r.currentVersion as number,
        currentWriteId: (r.currentWriteId as string | null | undefined) ?? undefined,
      };
    }
    if (r.status === 'error' && r.error instanceof Error) {
      return { status: 'error', error: r.error, reachedStore: true };
    }
  }
  const shown =
    typeof result === 'object' && result !== null
      ? `status ${JSON.stringify(r.status)}`
      : describeValue(result);
  return {
    status: 'error',
    error: contractError(adapter, `returned a malformed result (${shown}) for a record`),
    reachedStore: true,
  };
}

import { checkUserData, digest } from './user-data.js';
import type { UserState } from './user-state.js';

/**
 * How changes are found. `snapshot` (default): a flush serialises every user and compares a digest with what
 * was stored, so in-place mutation at any depth is seen without help; its cost grows with all users.
 * `explicit`: only users marked with `session.markDirty()` (or written with `persistNow()`) are looked at,
 * so a flush costs what the changed users cost; a change nobody marks is not written.
 */
export type DirtyTracking = 'snapshot' | 'explicit';

/** The user's data as one write sends it: JSON text, its digest, and the user's mark count when it was taken. */
export interface Snapshot {
  readonly json: string;
  readonly digest: string;
  readonly marks: number;
}

/** What is remembered of a snapshot after it was sent: enough to know it when the store holds it. */
export type SentSnapshot = Pick<Snapshot, 'digest' | 'marks'>;

/** What the tracker keeps per user. */
export interface DirtyState {
  /** Digest of the data last known to be in the store; undefined when none is. */
  savedDigest: string | undefined;
  /** Taken by a flush scan; the write reuses it unless a request wants fresher data. */
  snapshot: Snapshot | undefined;
  /** Explicit mode: bumped by every mark; a write clears the mark only if none came after its snapshot. */
  marks: number;
  /** Explicit mode: `marks` when the last successful write's snapshot was taken. */
  savedMarks: number;
}

/** Knows which users' data differs from the store, and takes the snapshots that writes send. */
export class DirtyTracker<Owner> {
  readonly mode: DirtyTracking;
  /** Explicit mode: the users marked and not yet written, in marking order. */
  readonly #marked = new Set<UserState<Owner>>();

  constructor(mode: DirtyTracking) {
    this.mode = mode;
  }

  newState(): DirtyState {
    return { savedDigest: undefined, snapshot: undefined, marks: 0, savedMarks: 0 };
  }

  /** The user was bound to data: `stored` data is what the store holds, anything else still has to be written. */
  bound(state: UserState<Owner>, { stored }: { stored: boolean }): void {
    const dirty = state.dirty;
    dirty.snapshot = undefined;
    dirty.savedDigest = stored ? digest(JSON.stringify(state.userData)) : undefined;
    if (stored) {
      dirty.savedMarks = dirty.marks;
      this.#marked.delete(state);
    } else {
      this.mark(state);
    }
  }

  /** The game says the user's data changed (explicit mode's signal; harmless in snapshot mode). */
  mark(state: UserState<Owner>): void {
    state.dirty.marks++;
    if (this.mode === 'explicit') this.#marked.add(state);
  }

  /** Drops a snapshot a flush scan took, so the next write serialises the newest data. */
  refresh(state: UserState<Owner>): void {
    state.dirty.snapshot = undefined;
  }

  /** Explicit mode: the users marked and not yet written (always empty in snapshot mode). */
  marked(): ReadonlySet<UserState<Owner>> {
    return this.#marked;
  }

  /** Whether the user's data differs from the store. Snapshot mode: one serialisation of the data. */
  isDirty(state: UserState<Owner>): boolean {
    const dirty = state.dirty;
    if (this.mode === 'explicit') return dirty.savedDigest === undefined || dirty.marks !== dirty.savedMarks;
    try {
      return digest(JSON.stringify(state.userData)) !== dirty.savedDigest;
    } catch {
      return true;
    }
  }

  /**
   * Serialises the user's data, validating it when it differs from the store (only then is it written).
   * Throws a `ValidationError` for data that cannot be stored.
   */
  snapshot(state: UserState<Owner>): Snapshot {
    const dirty = state.dirty;
    let json: string;
    try {
      json = JSON.stringify(state.userData);
    } catch (error) {
      checkUserData(state.userData); // names the offending path for BigInt and cycles
      throw error;
    }
    const snapshot = { json, digest: digest(json), marks: dirty.marks };
    if (snapshot.digest !== dirty.savedDigest) checkUserData(state.userData);
    return snapshot;
  }

  /** Keeps a snapshot a flush scan took for the user's next write, saving it a second serialisation. */
  keep(state: UserState<Owner>, snapshot: Snapshot): void {
    state.dirty.snapshot = snapshot;
  }

  /** Takes the user's kept snapshot for a write, if any (the next write takes a new one). */
  take(state: UserState<Owner>): Snapshot | undefined {
    const snapshot = state.dirty.snapshot;
    state.dirty.snapshot = undefined;
    return snapshot;
  }

  /** The digest of the user's data now; undefined when it cannot be serialised. */
  currentDigest(state: UserState<Owner>): string | undefined {
    try {
      return digest(JSON.stringify(state.userData));
    } catch {
      return undefined;
    }
  }

  /** `snapshot` is what the store now holds for the user. */
  saved(state: UserState<Owner>, snapshot: SentSnapshot): void {
    const dirty = state.dirty;
    dirty.savedDigest = snapshot.digest;
    dirty.savedMarks = snapshot.marks;
    if (dirty.savedMarks === dirty.marks) this.#marked.delete(state);
  }

  /** The user is forgotten. */
  forget(state: UserState<Owner>): void {
    this.#marked.delete(state);
  }
}

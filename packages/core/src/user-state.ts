import type { DirtyState } from './dirty-tracker.js';
import type { UserId } from './types.js';
import type { WriteState } from './write-queue.js';

/**
 * One user's data as the pipeline holds it: bound to a session, or kept after it until stored. Each part has
 * one owner that writes it: the registry (`UserRegistry`) the binding, the `DirtyTracker` `dirty`, the
 * `WriteQueue` `write`. Everyone else only reads.
 */
export interface UserState<Owner> {
  readonly key: string;
  readonly userId: UserId;
  /** The session the user is bound to, or was last bound to. */
  owner: Owner;
  /** The owner was destroyed with this data unsaved: it is held until stored, or shutdown reports it. */
  orphan: boolean;
  /** Forgotten: nothing is written for it any more. */
  dropped: boolean;
  /** The live object game code mutates. */
  userData: object;
  /** Bumped when the user is bound to other data, so a write of the old data leaves the new bookkeeping alone. */
  generation: number;
  readonly dirty: DirtyState;
  readonly write: WriteState;
}

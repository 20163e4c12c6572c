import { AdapterError } from '../errors.js';
import { wrapDriverError } from './redact.js';

/**
 * The client an adapter works through, and the adapter's open/closed state: one place for what every adapter
 * needs. A client the caller passed in is used as it is and never closed; a client the adapter opens itself
 * (from a URL) is opened on first use (again after a failed attempt) and closed by `close()`. After `close()`,
 * every call fails with ADAPTER_CLOSED, worded the same for every adapter.
 */
export class ClientLifecycle<Client> {
  readonly #adapterName: string;
  readonly #given: Client | Promise<Client> | undefined;
  readonly #open: (() => Client | Promise<Client>) | undefined;
  readonly #release: ((client: Client) => Promise<void>) | undefined;
  readonly #secrets: readonly (string | undefined)[];
  #owned: Promise<Client> | undefined;
  #closing: Promise<void> | undefined;

  /**
   * `given`: a client the caller owns. Otherwise `open` makes the adapter's own client and `release` closes
   * it. Exactly one of `given` and `open`. A driver error from opening or closing is wrapped as an
   * `AdapterError` cleaned of `secrets` (the adapter's passwords).
   */
  constructor(
    adapterName: string,
    source:
      | { given: Client | Promise<Client> }
      | { open: () => Client | Promise<Client>; release: (client: Client) => Promise<void> },
    { secrets = [] }: { secrets?: readonly (string | undefined)[] } = {},
  ) {
    this.#adapterName = adapterName;
    this.#secrets = secrets;
    if ('given' in source) {
      this.#given = source.given;
    } else {
      this.#open = source.open;
      this.#release = source.release;
    }
  }

  /** Whether the adapter opened (or will open) its own client, which `close()` then closes. */
  get ownsClient(): boolean {
    return this.#open !== undefined;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Throws ADAPTER_CLOSED when `close()` was called. */
  assertOpen(operation: string): void {
    if (this.#closing !== undefined) {
      throw new AdapterError(
        this.#adapterName,
        `${operation} failed: the adapter is closed. Create a new adapter to keep using the store.`,
        { code: 'ADAPTER_CLOSED' },
      );
    }
  }

  /** The client for `operation`, opening the adapter's own on first use. Throws ADAPTER_CLOSED after `close()`. */
  async client(operation: string): Promise<Client> {
    this.assertOpen(operation);
    try {
      if (this.#open === undefined) return await this.#given!;
      if (this.#owned === undefined) {
        const opening = Promise.resolve().then(this.#open);
        this.#owned = opening;
        // A failed open is tried again by the next call rather than remembered.
        opening.catch(() => {
          if (this.#owned === opening) this.#owned = undefined;
        });
      }
      return await this.#owned;
    } catch (error) {
      throw wrapDriverError(this.#adapterName, operation, error, this.#secrets);
    }
  }

  /**
   * Idempotent. Closes the adapter's own client if it was opened (a client the caller passed in stays open);
   * calls made afterwards fail with ADAPTER_CLOSED.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const owned = this.#owned;
      if (owned === undefined || this.#release === undefined) return;
      let client: Client;
      try {
        client = await owned;
      } catch {
        return; // never opened: nothing to close
      }
      try {
        await this.#release(client);
      } catch (error) {
        throw wrapDriverError(this.#adapterName, 'close', error, this.#secrets);
      }
    })();
    return this.#closing;
  }
}

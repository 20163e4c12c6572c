import { randomBytes } from 'node:crypto';
import type { PersistenceAdapter, UserId } from '@cagey-sessions/core';
import type { ConformanceGroup, ConformanceOptions, InjectedClient, InspectedUser } from './types.js';

/** One check of the suite: a plain async function, so it can run inside or outside a vitest test. */
export interface Check {
  group: ConformanceGroup;
  name: string;
  /** An optional capability the check cannot run without; when it is not declared a notice takes its place. */
  requires?: 'rejectedUserData' | 'injectedClient';
  /**
   * The optional adapter method the check is about. When the adapter has no such method the check does not
   * run and a notice says so instead.
   */
  method?: 'scan' | 'restore';
  run(t: CheckContext): Promise<void>;
}

export function newNamespace(): string {
  return `cs_${randomBytes(8).toString('hex')}`;
}

/**
 * What a check works with: a fresh namespace, adapters over it (all disposed of afterwards) and the raw reader
 * when the options provide one.
 */
export class CheckContext {
  readonly namespace: string;
  /** What this check could not cover (missing capabilities). */
  readonly notes: string[] = [];
  readonly options: ConformanceOptions<PersistenceAdapter>;
  readonly #namespaces: string[];
  readonly #opened: { adapter: PersistenceAdapter; namespace: string }[] = [];
  readonly #injected: InjectedClient[] = [];
  #primary: PersistenceAdapter | undefined;

  constructor(options: ConformanceOptions<PersistenceAdapter>, namespaces: string[]) {
    this.options = options;
    this.#namespaces = namespaces;
    this.namespace = this.freshNamespace();
  }

  /** Another namespace, disjoint from this check's, remembered for `afterAll` cleanup. */
  freshNamespace(): string {
    const namespace = newNamespace();
    this.#namespaces.push(namespace);
    return namespace;
  }

  /**
   * A namespace that starts with this check's own (`<namespace><suffix>`), remembered for cleanup: a store
   * that matches names by prefix would mix the two up.
   */
  namespaceExtending(suffix: string): string {
    const namespace = `${this.namespace}${suffix}`;
    this.#namespaces.push(namespace);
    return namespace;
  }

  /** The check's main adapter over its namespace, set up. */
  async adapter(): Promise<PersistenceAdapter> {
    this.#primary ??= await this.open();
    return this.#primary;
  }

  /** Another adapter ("process"), over this check's namespace unless told otherwise; set up unless `setup: false`. */
  async open(options: { namespace?: string; setup?: boolean } = {}): Promise<PersistenceAdapter> {
    const namespace = options.namespace ?? this.namespace;
    const adapter = await this.options.createAdapter({ namespace });
    if (adapter === null || typeof adapter !== 'object' || typeof adapter.save !== 'function') {
      throw new Error(`createAdapter({ namespace: '${namespace}' }) did not return an adapter.`);
    }
    this.#opened.push({ adapter, namespace });
    if (options.setup !== false && typeof adapter.setup === 'function') await adapter.setup();
    return adapter;
  }

  async injectedClient(): Promise<InjectedClient | undefined> {
    if (!this.options.injectedClient) return undefined;
    const injected = await this.options.injectedClient({ namespace: this.namespace });
    this.#injected.push(injected);
    if (typeof injected.adapter.setup === 'function') await injected.adapter.setup();
    return injected;
  }

  get canInspect(): boolean {
    return this.options.inspect !== undefined;
  }

  /** The store's own view of a user (requires `options.inspect`). */
  async inspect(userId: UserId, namespace = this.namespace): Promise<InspectedUser | undefined> {
    if (!this.options.inspect) throw new Error('inspect is not provided');
    return this.options.inspect({ namespace }, userId);
  }

  note(message: string): void {
    if (!this.notes.includes(message)) this.notes.push(message);
  }

  /** Closes or destroys every adapter the check opened; the first failure is thrown after all were tried. */
  async dispose(): Promise<void> {
    const failures: unknown[] = [];
    for (const { adapter, namespace } of this.#opened.splice(0)) {
      try {
        if (this.options.destroyAdapter) await this.options.destroyAdapter(adapter, { namespace });
        else await adapter.close();
      } catch (error) {
        failures.push(error);
      }
    }
    for (const injected of this.#injected.splice(0)) {
      try {
        await injected.adapter.close();
        await injected.dispose();
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) {
      throw new Error(`Cleaning up after the check failed: ${String(failures[0])}`, { cause: failures[0] });
    }
  }
}

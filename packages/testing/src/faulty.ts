import {
  AdapterError,
  type PersistenceAdapter,
  type RestoreRecord,
  type SaveRecord,
  type SaveResult,
  type ScanOptions,
  type ScanPage,
  type StoredUser,
  type UserId,
} from '@cagey-sessions/core';

/** The adapter methods a fault can target. */
export type AdapterMethod = 'load' | 'save' | 'delete' | 'setup' | 'close' | 'scan' | 'restore';

export const adapterMethods: readonly AdapterMethod[] = [
  'load',
  'save',
  'delete',
  'setup',
  'close',
  'scan',
  'restore',
];

export interface FaultyAdapterOptions {
  /** Seed of the pseudo-random generator behind `failRate` and ranged `latency`, so runs repeat. Default 1. */
  seed?: number;
}

export interface FaultTarget {
  /** Which calls the fault applies to. Default `['save']`. */
  methods?: readonly AdapterMethod[];
}

export interface FailOptions extends FaultTarget {
  /** The rejection. Default: an `AdapterError` with code ADAPTER_ERROR and message "injected fault". */
  error?: Error;
  /**
   * `'before'` (default): the call fails without reaching the inner adapter. `'after'`: the inner adapter does
   * the work and the caller still sees a failure, like a response lost after the store committed.
   */
  phase?: 'before' | 'after';
}

export type LatencySpec = number | { min: number; max: number };

/** A hang started by `hang()`. */
export interface HangHandle {
  /** Ends this hang: held calls proceed to the inner adapter in the order they arrived; new calls pass. */
  release(): void;
  /** Calls currently held by this hang. */
  readonly pending: number;
}

/** One `save` call as the adapter saw it. Times are `performance.now()` milliseconds. */
export interface SaveObservation {
  userIds: UserId[];
  startedAt: number;
  /** Set when the call resolved or rejected. */
  settledAt?: number;
  /** Set when the call rejected. */
  error?: Error;
}

/** A call that started, as `nextCall` reports it. */
export interface ObservedCall {
  method: AdapterMethod;
  args: unknown[];
}

interface FailRule {
  methods: ReadonlySet<AdapterMethod>;
  remaining: number;
  error: Error | undefined;
  phase: 'before' | 'after';
}

interface RateRule {
  methods: ReadonlySet<AdapterMethod>;
  fraction: number;
  error: Error | undefined;
  phase: 'before' | 'after';
}

interface LatencyRule {
  methods: ReadonlySet<AdapterMethod>;
  min: number;
  max: number;
}

interface Hang {
  methods: ReadonlySet<AdapterMethod>;
  active: boolean;
  held: (() => void)[];
}

interface RecordRule {
  predicate: (record: SaveRecord) => boolean;
  error: Error | undefined;
}

interface CallWaiter {
  method: AdapterMethod | undefined;
  resolve: (call: ObservedCall) => void;
}

interface PlannedFailure {
  error: Error | undefined;
  phase: 'before' | 'after';
}

/**
 * Wraps an adapter and injects faults between the caller and it: failures, latency, hangs and per-record
 * rejections, with a record of every call. Without faults it is a transparent pass-through.
 */
export class FaultyAdapter<A extends PersistenceAdapter = PersistenceAdapter> implements PersistenceAdapter {
  readonly name: string;
  readonly maxBatchSize?: number;
  readonly inner: A;
  /** Present exactly when the inner adapter has `setup`. */
  readonly setup?: () => Promise<void>;
  /** Present exactly when the inner adapter has `scan`. */
  readonly scan?: (options?: ScanOptions) => Promise<ScanPage>;
  /** Present exactly when the inner adapter has `restore`. */
  readonly restore?: (records: readonly RestoreRecord[]) => Promise<SaveResult[]>;

  /** One entry per `save` call, in call order. Truncate it (`saves.length = 0`) to start a new observation. */
  readonly saves: SaveObservation[] = [];
  /** Calls started per method, including failed and held ones. */
  readonly calls: Record<AdapterMethod, number> = {
    load: 0,
    save: 0,
    delete: 0,
    setup: 0,
    close: 0,
    scan: 0,
    restore: 0,
  };

  #inFlight = 0;
  #random: () => number;
  #failRules: FailRule[] = [];
  #rateRule: RateRule | undefined;
  #latency: LatencyRule | undefined;
  #hangs: Hang[] = [];
  #recordRules: RecordRule[] = [];
  #waiters: CallWaiter[] = [];

  constructor(inner: A, options: FaultyAdapterOptions = {}) {
    const seed = options.seed ?? 1;
    if (!Number.isInteger(seed)) throw new TypeError(`FaultyAdapter: seed must be an integer, got ${seed}.`);
    this.inner = inner;
    this.name = `faulty(${inner.name})`;
    if (inner.maxBatchSize !== undefined) this.maxBatchSize = inner.maxBatchSize;
    if (typeof inner.setup === 'function') {
      const setup = inner.setup.bind(inner);
      this.setup = () => this.#call('setup', [], () => setup());
    }
    if (typeof inner.scan === 'function') {
      const scan = inner.scan.bind(inner);
      this.scan = (options) =>
        this.#call('scan', options === undefined ? [] : [options], () => scan(options));
    }
    if (typeof inner.restore === 'function') {
      const restore = inner.restore.bind(inner);
      this.restore = (records) => this.#call('restore', [records], () => restore(records));
    }
    this.#random = mulberry32(seed);
  }

  /** Calls currently started and not yet settled, including held ones. */
  get inFlight(): number {
    return this.#inFlight;
  }

  load(userId: UserId): Promise<StoredUser | undefined> {
    return this.#call('load', [userId], () => this.inner.load(userId));
  }

  save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    return this.#call('save', [records], () => this.#saveThroughRules(records));
  }

  delete(userId: UserId, expectedVersion?: number): Promise<boolean> {
    const args = expectedVersion === undefined ? [userId] : [userId, expectedVersion];
    return this.#call('delete', args, () => this.inner.delete(userId, expectedVersion));
  }

  close(): Promise<void> {
    return this.#call('close', [], () => this.inner.close());
  }

  /** The next `n` matching calls reject. Adds to earlier `failNext` budgets; the oldest is used first. */
  failNext(n: number, options: FailOptions = {}): this {
    if (!Number.isSafeInteger(n) || n < 0)
      throw new TypeError(`failNext: n must be a non-negative integer, got ${n}.`);
    if (n > 0) {
      this.#failRules.push({
        methods: methodSet(options.methods),
        remaining: n,
        error: options.error,
        phase: phaseOf(options.phase),
      });
    }
    return this;
  }

  /** Each matching call fails with probability `fraction` (seeded, repeatable). Replaces an earlier rate. */
  failRate(fraction: number, options: FailOptions = {}): this {
    if (!(fraction >= 0 && fraction <= 1)) {
      throw new TypeError(`failRate: fraction must be between 0 and 1, got ${fraction}.`);
    }
    this.#rateRule =
      fraction === 0
        ? undefined
        : {
            methods: methodSet(options.methods),
            fraction,
            error: options.error,
            phase: phaseOf(options.phase),
          };
    return this;
  }

  /** Delay before each matching call reaches the inner adapter: fixed, or uniform in `[min, max]`. 0 removes it. */
  latency(spec: LatencySpec, options: FaultTarget = {}): this {
    const { min, max } = typeof spec === 'number' ? { min: spec, max: spec } : spec;
    if (!(Number.isFinite(min) && Number.isFinite(max) && min >= 0 && max >= min)) {
      throw new TypeError(`latency: expected ms >= 0 or { min, max } with 0 <= min <= max.`);
    }
    this.#latency = max === 0 ? undefined : { methods: methodSet(options.methods), min, max };
    return this;
  }

  /**
   * From now on matching calls stop before the inner adapter and stay pending until the returned handle's
   * `release()` (or `releaseAll()` / `reset()`).
   */
  hang(options: FaultTarget = {}): HangHandle {
    const hang: Hang = { methods: methodSet(options.methods), active: true, held: [] };
    this.#hangs.push(hang);
    return {
      release: () => this.#release(hang),
      get pending() {
        return hang.held.length;
      },
    };
  }

  /** Releases every hang; held calls proceed in arrival order. */
  releaseAll(): this {
    for (const hang of this.#hangs.slice()) this.#release(hang);
    return this;
  }

  /**
   * Records of a save matching `predicate` get `{ status: 'error' }` results and never reach the inner adapter;
   * their neighbours do. Rules add up.
   */
  rejectRecords(predicate: (record: SaveRecord) => boolean, error?: Error): this {
    this.#recordRules.push({ predicate, error });
    return this;
  }

  /**
   * Clears every fault and releases held calls. Observations (`saves`, `calls`) are kept, and a call that already
   * planned its failure still fails.
   */
  reset(): this {
    this.#failRules = [];
    this.#rateRule = undefined;
    this.#latency = undefined;
    this.#recordRules = [];
    this.releaseAll();
    return this;
  }

  /** Resolves when the next call (of `method`, if given) starts, before any fault is applied to it. */
  nextCall(method?: AdapterMethod): Promise<ObservedCall> {
    return new Promise((resolve) => this.#waiters.push({ method, resolve }));
  }

  async #call<T>(method: AdapterMethod, args: unknown[], run: () => Promise<T>): Promise<T> {
    this.calls[method] += 1;
    this.#inFlight += 1;
    const observation: SaveObservation | undefined =
      method === 'save' ? { userIds: userIdsOf(args[0]), startedAt: performance.now() } : undefined;
    if (observation) this.saves.push(observation);
    this.#notify(method, args);
    try {
      const failure = this.#planFailure(method);
      const delay = this.#delayFor(method);
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      const hang = this.#hangs.find((h) => h.active && h.methods.has(method));
      if (hang) await new Promise<void>((resolve) => hang.held.push(resolve));
      if (failure?.phase === 'before') throw this.#errorFor(failure);
      const result = await run();
      if (failure?.phase === 'after') throw this.#errorFor(failure);
      return result;
    } catch (error) {
      if (observation) observation.error = error instanceof Error ? error : new Error(String(error));
      throw error;
    } finally {
      this.#inFlight -= 1;
      if (observation) observation.settledAt = performance.now();
    }
  }

  async #saveThroughRules(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    if (this.#recordRules.length === 0) return this.inner.save(records);
    const results: (SaveResult | undefined)[] = new Array(records.length);
    const passed: SaveRecord[] = [];
    const passedAt: number[] = [];
    records.forEach((record, index) => {
      const rule = this.#recordRules.find((r) => r.predicate(record));
      if (rule) {
        results[index] = { status: 'error', error: rule.error ?? this.#injected('injected record fault') };
      } else {
        passed.push(record);
        passedAt.push(index);
      }
    });
    if (passed.length > 0) {
      const written = await this.inner.save(passed);
      passedAt.forEach((index, i) => {
        results[index] = written[i];
      });
    }
    return results as SaveResult[];
  }

  #planFailure(method: AdapterMethod): PlannedFailure | undefined {
    const rule = this.#failRules.find((r) => r.remaining > 0 && r.methods.has(method));
    if (rule) {
      rule.remaining -= 1;
      if (rule.remaining === 0) this.#failRules.splice(this.#failRules.indexOf(rule), 1);
      return rule;
    }
    const rate = this.#rateRule;
    if (rate?.methods.has(method) && this.#random() < rate.fraction) return rate;
    return undefined;
  }

  #delayFor(method: AdapterMethod): number {
    const latency = this.#latency;
    if (!latency?.methods.has(method)) return 0;
    return latency.min + (latency.max - latency.min) * this.#random();
  }

  #errorFor(failure: PlannedFailure): Error {
    return failure.error ?? this.#injected('injected fault');
  }

  #injected(message: string): AdapterError {
    return new AdapterError(this.name, message);
  }

  #release(hang: Hang): void {
    hang.active = false;
    const index = this.#hangs.indexOf(hang);
    if (index >= 0) this.#hangs.splice(index, 1);
    for (const resume of hang.held.splice(0)) resume();
  }

  #notify(method: AdapterMethod, args: unknown[]): void {
    if (this.#waiters.length === 0) return;
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiting) {
      if (waiter.method === undefined || waiter.method === method) waiter.resolve({ method, args });
      else this.#waiters.push(waiter);
    }
  }
}

function userIdsOf(records: unknown): UserId[] {
  if (!Array.isArray(records)) return [];
  return records.map((record: Partial<SaveRecord> | null | undefined) => record?.userId as UserId);
}

function methodSet(methods: readonly AdapterMethod[] | undefined): ReadonlySet<AdapterMethod> {
  const set = new Set<AdapterMethod>(methods ?? ['save']);
  for (const method of set) {
    if (!adapterMethods.includes(method)) {
      throw new TypeError(
        `Unknown adapter method "${String(method)}"; expected one of ${adapterMethods.join(', ')}.`,
      );
    }
  }
  return set;
}

function phaseOf(phase: 'before' | 'after' | undefined): 'before' | 'after' {
  if (phase === undefined || phase === 'before' || phase === 'after') return phase ?? 'before';
  throw new TypeError(`phase must be 'before' or 'after', got ${String(phase)}.`);
}

/** Small, fast, seedable PRNG (public-domain mulberry32); quality is ample for fault injection. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

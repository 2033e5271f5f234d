// Prometheus metrics of the billing chain on a caller's prom-client registry; labels never name a user or a key.
import { register as defaultRegistry, Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { BreakerState } from './breaker.js';
import { CHECK_NAME_LIST, type CheckName, type CheckOutcome } from './decisions.js';
import { BillingConfigError, parseOptions, v } from './options.js';
import type { CacheEntityKind } from './types.js';

/** How a check ended, as counted: a shadowed check that would have denied counts `shadow_deny`. */
export type DecisionOutcomeLabel = CheckOutcome | 'shadow_deny';
export type CacheResultLabel = 'hit' | 'miss' | 'error';
export type SettlementResultLabel = 'stored' | 'duplicate' | 'conflict' | 'rejected' | 'failed';
/** How a request to grow a hold ended (docs/stream-metering.md). */
export type HoldExtensionLabel = 'extended' | 'refused' | 'unavailable';

export interface BillingMetricsOptions {
  /** The prom-client registry to register on. Default: prom-client's global `register`. */
  registry?: Registry;
  /** Prepended to every metric name; must be a valid Prometheus name prefix. Default 'billing_'. */
  prefix?: string;
}

/** Pull-style values read at scrape time, so the hot path never touches them. */
export interface BillingGaugeSources {
  writeQueueDepth: () => number;
  /** Cumulative count since the queue was created. */
  writeQueueDropped: () => number;
  openReservations?: () => number;
  /** Concurrency slots held for this process's requests (docs/holds.md). */
  concurrencySlots?: () => number;
  /** Settlements waiting for a group-commit transaction (docs/group-commit.md). */
  settlementsWaiting?: () => number;
  breakerState: () => BreakerState;
}

/** What the core and middleware call; `BillingMetrics` records, `noopMetrics` does nothing. */
export interface BillingMetricsRecorder {
  decision(check: CheckName, outcome: DecisionOutcomeLabel): void;
  checkDuration(check: CheckName, seconds: number): void;
  cache(entity: CacheEntityKind, result: CacheResultLabel): void;
  breakerTransition(from: BreakerState, to: BreakerState): void;
  settlement(result: SettlementResultLabel): void;
  settlementRetry(): void;
  /** A group-commit transaction committed: how many settlements it carried and how long it took. Optional. */
  settlementBatch?(size: number, seconds: number): void;
  /** A hold was asked to grow (docs/stream-metering.md). Optional. */
  holdExtension?(result: HoldExtensionLabel): void;
  /** Registers the scrape-time sources; the returned function detaches them (call it at close). */
  bindGauges(sources: BillingGaugeSources): () => void;
}

// Every label value is known up front. The `satisfies` records make the compiler flag a new check,
// entity or state that is missing here; unknown values are never turned into new series.
const CHECKS = CHECK_NAME_LIST;
const OUTCOMES = Object.keys({
  allowed: 1,
  denied: 1,
  skipped: 1,
  failed_open: 1,
  shadow_deny: 1,
} satisfies Record<DecisionOutcomeLabel, 1>) as DecisionOutcomeLabel[];
const ENTITIES = Object.keys({
  balance: 1,
  subscription: 1,
  apiKeyWindows: 1,
  platformQuota: 1,
  rpmOverride: 1,
} satisfies Record<CacheEntityKind, 1>) as CacheEntityKind[];
const CACHE_RESULTS: readonly CacheResultLabel[] = ['hit', 'miss', 'error'];
const SETTLEMENT_RESULTS: readonly SettlementResultLabel[] = ['stored', 'duplicate', 'conflict', 'rejected', 'failed'];
const EXTENSION_RESULTS: readonly HoldExtensionLabel[] = ['extended', 'refused', 'unavailable'];
/** The gauge's encoding: the higher, the worse, so several breakers on one registry report the worst. */
const BREAKER_STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const satisfies Record<BreakerState, number>;
const BREAKER_STATES = Object.keys(BREAKER_STATE_VALUE) as BreakerState[];

/** Warm checks take tens of microseconds (memory cache) to a few ms (Redis round trips); 100 ms is an outage. */
const CHECK_DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

/** Settlements per transaction (1 when idle, up to maxBatchSize), and how long one takes. */
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
const BATCH_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

const PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/;

const DEFAULTS: Readonly<Required<BillingMetricsOptions>> = Object.freeze({ registry: defaultRegistry, prefix: 'billing_' });

/** Metrics this module created, so a second BillingMetrics reuses them and never adopts someone else's. */
const owned = new WeakSet<object>();

/**
 * A counter's series in a fixed order. The request path only bumps `counts` (a plain array write,
 * about 20 ns, where a prom-client child's inc() hashes and validates its labels, about 270 ns);
 * the counter's collect callback adds the difference to prom-client at scrape time. All instances
 * on one registry share the table through the shared metric.
 */
interface CounterTable {
  readonly labels: readonly Record<string, string>[];
  readonly counts: Float64Array;
  /** What earlier scrapes already added to the prom-client counter. */
  readonly exported: Float64Array;
}
const tables = new WeakMap<object, CounterTable>();

/** Where each label combination lives in its table; the same layout for every instance. */
interface Layout<K> {
  readonly labels: readonly Record<string, string>[];
  readonly slots: K;
}

function layout2(
  names: readonly [string, string],
  outer: readonly string[],
  inner: (o: string) => readonly string[],
): Layout<ReadonlyMap<string, ReadonlyMap<string, number>>> {
  const labels: Record<string, string>[] = [];
  const slots = new Map<string, Map<string, number>>();
  for (const a of outer) {
    const row = new Map<string, number>();
    for (const b of inner(a)) {
      row.set(b, labels.length);
      labels.push({ [names[0]]: a, [names[1]]: b });
    }
    slots.set(a, row);
  }
  return { labels, slots };
}

function layout1(name: string, values: readonly string[]): Layout<ReadonlyMap<string, number>> {
  return { labels: values.map((value) => ({ [name]: value })), slots: new Map(values.map((value, i) => [value, i])) };
}

const DECISIONS = layout2(['check', 'outcome'], CHECKS, () => OUTCOMES);
const CACHE_READS = layout2(['entity', 'result'], ENTITIES, () => CACHE_RESULTS);
const TRANSITIONS = layout2(['from', 'to'], BREAKER_STATES, (from) => BREAKER_STATES.filter((to) => to !== from));
const SETTLEMENTS = layout1('result', SETTLEMENT_RESULTS);
const EXTENSIONS = layout1('result', EXTENSION_RESULTS);
const UNLABELLED: readonly Record<string, string>[] = [{}];

/** Scrape-time sources per pull metric; every BillingMetrics bound to it contributes. */
type Sources = Set<() => number>;
const sourcesOf = new WeakMap<object, Sources>();

interface ObserveChild {
  observe(value: number): void;
}

export class BillingMetrics implements BillingMetricsRecorder {
  readonly registry: Registry;
  readonly prefix: string;
  readonly #decisions: Float64Array;
  readonly #cacheReads: Float64Array;
  readonly #transitions: Float64Array;
  readonly #settlements: Float64Array;
  readonly #retries: Float64Array;
  readonly #extensions: Float64Array;
  readonly #durations = new Map<string, ObserveChild>();
  readonly #writeQueueDepth: Gauge;
  readonly #writeQueueDropped: Counter;
  readonly #openReservations: Gauge;
  readonly #concurrencySlots: Gauge;
  readonly #settlementsWaiting: Gauge;
  readonly #breakerState: Gauge;
  readonly #batchSizes: Histogram;
  readonly #batchSeconds: Histogram;

  constructor(options?: BillingMetricsOptions) {
    const parsed = parseOptions<Required<BillingMetricsOptions>>('metrics', options, DEFAULTS, {
      registry: v.object<Registry>('getSingleMetric', 'registerMetric', 'metrics'),
      prefix: (value, name) => {
        if (typeof value === 'string' && PREFIX.test(value)) return value;
        throw new BillingConfigError(name, `${name} must match [a-zA-Z_:][a-zA-Z0-9_:]* (a Prometheus metric name prefix), got ${JSON.stringify(value)}`);
      },
    });
    this.registry = parsed.registry;
    this.prefix = parsed.prefix;
    const p = this.prefix;

    this.#decisions = this.#tableCounter(`${p}decisions_total`, 'Billing check decisions by check and outcome.', ['check', 'outcome'], DECISIONS.labels);
    const durations = this.#histogram(`${p}check_duration_seconds`, 'Time spent in each billing check, in seconds.', ['check']);
    for (const check of CHECKS) this.#durations.set(check, durations.labels(check));
    this.#cacheReads = this.#tableCounter(`${p}cache_requests_total`, 'Billing cache reads by entity and result.', ['entity', 'result'], CACHE_READS.labels);
    this.#transitions = this.#tableCounter(`${p}breaker_transitions_total`, 'Circuit breaker state changes.', ['from', 'to'], TRANSITIONS.labels);
    this.#settlements = this.#tableCounter(`${p}settlements_total`, 'Settlements by result.', ['result'], SETTLEMENTS.labels);
    this.#retries = this.#tableCounter(`${p}settlement_retries_total`, 'Settlement attempts retried after a store failure.', [], UNLABELLED);
    this.#extensions = this.#tableCounter(
      `${p}hold_extensions_total`,
      'Requests to grow a hold (a metered stream): extended, refused by a limit, or unavailable (cache error, hold gone).',
      ['result'],
      EXTENSIONS.labels,
    );

    this.#writeQueueDepth = this.#pullGauge(`${p}write_queue_depth`, 'Cache write tasks queued, not yet running.', sum);
    this.#writeQueueDropped = this.#pullCounter(`${p}write_queue_dropped_total`, 'Best-effort cache fills dropped because the write queue was full or closed.');
    this.#openReservations = this.#pullGauge(
      `${p}open_reservations`,
      "Cost reservations held for this process's requests (in the cache, or in the store while the cache cannot hold), not yet settled or released.",
      sum,
    );
    this.#concurrencySlots = this.#pullGauge(
      `${p}concurrency_slots_in_use`,
      "Concurrency slots (per user, per API key) held for this process's requests in flight.",
      sum,
    );
    this.#settlementsWaiting = this.#pullGauge(`${p}settlements_waiting`, 'Settlements waiting for a group-commit transaction.', sum);
    this.#batchSizes = this.#plainHistogram(`${p}settlement_batch_size`, 'Settlements committed per transaction.', BATCH_SIZE_BUCKETS);
    this.#batchSeconds = this.#plainHistogram(
      `${p}settlement_batch_seconds`,
      'Time from the start of a settlement transaction to its commit, in seconds.',
      BATCH_SECONDS_BUCKETS,
    );
    this.#breakerState = this.#pullGauge(`${p}breaker_state`, 'Circuit breaker state: 0 closed, 1 half-open, 2 open (the worst of the bound breakers).', max);
  }

  // Unknown label values (a JavaScript caller bypassing the types) find no slot and are dropped:
  // a metrics call must never throw on the request path, nor grow a series per value.

  decision(check: CheckName, outcome: DecisionOutcomeLabel): void {
    const slot = DECISIONS.slots.get(check)?.get(outcome);
    if (slot !== undefined) this.#decisions[slot]! += 1;
  }

  checkDuration(check: CheckName, seconds: number): void {
    // prom-client throws on a non-finite value.
    if (Number.isFinite(seconds) && seconds >= 0) this.#durations.get(check)?.observe(seconds);
  }

  cache(entity: CacheEntityKind, result: CacheResultLabel): void {
    const slot = CACHE_READS.slots.get(entity)?.get(result);
    if (slot !== undefined) this.#cacheReads[slot]! += 1;
  }

  breakerTransition(from: BreakerState, to: BreakerState): void {
    const slot = TRANSITIONS.slots.get(from)?.get(to);
    if (slot !== undefined) this.#transitions[slot]! += 1;
  }

  settlement(result: SettlementResultLabel): void {
    const slot = SETTLEMENTS.slots.get(result);
    if (slot !== undefined) this.#settlements[slot]! += 1;
  }

  settlementRetry(): void {
    this.#retries[0]! += 1;
  }

  holdExtension(result: HoldExtensionLabel): void {
    const slot = EXTENSIONS.slots.get(result);
    if (slot !== undefined) this.#extensions[slot]! += 1;
  }

  settlementBatch(size: number, seconds: number): void {
    if (Number.isFinite(size) && size > 0) this.#batchSizes.observe(size);
    if (Number.isFinite(seconds) && seconds >= 0) this.#batchSeconds.observe(seconds);
  }

  bindGauges(sources: BillingGaugeSources): () => void {
    const { writeQueueDepth, writeQueueDropped, openReservations, concurrencySlots, settlementsWaiting, breakerState } = sources;
    // Checked before anything is bound, so a bad call leaves no half-bound sources behind.
    for (const [name, source] of Object.entries({ writeQueueDepth, writeQueueDropped, breakerState })) {
      if (typeof source !== 'function') throw new TypeError(`bindGauges: ${name} must be a function, got ${typeof source}`);
    }
    for (const [name, source] of Object.entries({ openReservations, concurrencySlots, settlementsWaiting })) {
      if (source !== undefined && typeof source !== 'function') throw new TypeError(`bindGauges: ${name} must be a function when given, got ${typeof source}`);
    }
    const bound: [object, () => number][] = [
      [this.#writeQueueDepth, writeQueueDepth],
      [this.#writeQueueDropped, writeQueueDropped],
      [this.#breakerState, () => BREAKER_STATE_VALUE[breakerState()]],
    ];
    if (openReservations) bound.push([this.#openReservations, openReservations]);
    if (concurrencySlots) bound.push([this.#concurrencySlots, concurrencySlots]);
    if (settlementsWaiting) bound.push([this.#settlementsWaiting, settlementsWaiting]);
    for (const [metric, read] of bound) sourcesOf.get(metric)?.add(read);
    return () => {
      for (const [metric, read] of bound) sourcesOf.get(metric)?.delete(read);
    };
  }

  /** The metric registered under `name` if this module made it with the same type and labels, else undefined. */
  #reuse<T>(name: string, type: string, labelNames: readonly string[]): T | undefined {
    const existing = this.registry.getSingleMetric(name) as unknown as { type?: string; labelNames?: readonly string[] } | undefined;
    if (existing === undefined) return undefined;
    const sameLabels = existing.labelNames?.length === labelNames.length && labelNames.every((l, i) => existing.labelNames?.[i] === l);
    if (!owned.has(existing) || existing.type !== type || !sameLabels) {
      throw new BillingConfigError('metrics.registry', `metric ${name} is already registered by something else; pass another metrics.prefix or registry`);
    }
    return existing as T;
  }

  /** A counter fed from a CounterTable; returns the counts array the request path bumps. */
  #tableCounter(name: string, help: string, labelNames: readonly string[], labels: readonly Record<string, string>[]): Float64Array {
    const existing = this.#reuse<Counter>(name, 'counter', labelNames);
    const shared = existing && tables.get(existing);
    if (shared) return shared.counts;
    const table: CounterTable = { labels, counts: new Float64Array(labels.length), exported: new Float64Array(labels.length) };
    const metric = new Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect(this: Counter) {
        for (let i = 0; i < table.labels.length; i++) {
          const delta = table.counts[i]! - table.exported[i]!;
          if (delta > 0) {
            this.inc(table.labels[i]!, delta);
            table.exported[i] = table.counts[i]!;
          }
        }
      },
    });
    // Every known series exists at 0 from the start, so rate() and absence alerts work before the first event.
    for (const series of labels) metric.inc(series, 0);
    tables.set(metric, table);
    owned.add(metric);
    return table.counts;
  }

  /**
   * The per-check duration histogram. Unlike the counters it is fed through prom-client on the
   * request path (about 450 ns per observation): prom-client has no public way to load bucket
   * counts kept elsewhere. Its series start at zero when it is created (zero() on a reused one would wipe it).
   */
  #histogram(name: string, help: string, labelNames: readonly ['check']): Histogram<'check'> {
    let metric = this.#reuse<Histogram<'check'>>(name, 'histogram', labelNames);
    if (!metric) {
      metric = new Histogram({ name, help, labelNames, buckets: CHECK_DURATION_BUCKETS, registers: [this.registry] });
      for (const check of CHECKS) metric.zero({ check });
      owned.add(metric);
    }
    return metric;
  }

  /** An unlabelled histogram, shared by every BillingMetrics on the registry. */
  #plainHistogram(name: string, help: string, buckets: number[]): Histogram {
    let metric = this.#reuse<Histogram>(name, 'histogram', []);
    if (!metric) {
      metric = new Histogram({ name, help, buckets, registers: [this.registry] });
      owned.add(metric);
    }
    return metric;
  }

  #pullGauge(name: string, help: string, combine: (values: number[]) => number): Gauge {
    let metric = this.#reuse<Gauge>(name, 'gauge', []);
    if (!metric) {
      const sources: Sources = new Set();
      metric = new Gauge({
        name,
        help,
        registers: [this.registry],
        collect(this: Gauge) {
          this.set(combine(read(sources)));
        },
      });
      sourcesOf.set(metric, sources);
      owned.add(metric);
    }
    return metric;
  }

  /** A counter whose value is a cumulative count kept elsewhere (read at scrape time). */
  #pullCounter(name: string, help: string): Counter {
    let metric = this.#reuse<Counter>(name, 'counter', []);
    if (!metric) {
      const sources: Sources = new Set();
      metric = new Counter({
        name,
        help,
        registers: [this.registry],
        collect(this: Counter) {
          this.reset();
          this.inc(sum(read(sources)));
        },
      });
      sourcesOf.set(metric, sources);
      owned.add(metric);
    }
    return metric;
  }
}

/** Reads every bound source; a throwing or nonsensical getter is skipped so a scrape never fails on it. */
function read(sources: Sources): number[] {
  const values: number[] = [];
  for (const source of sources) {
    try {
      const value = source();
      if (Number.isFinite(value) && value >= 0) values.push(value);
    } catch {
      // A broken getter must not take /metrics down; its series just reads as absent from the total.
    }
  }
  return values;
}

function sum(values: number[]): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

function max(values: number[]): number {
  let worst = 0;
  for (const value of values) if (value > worst) worst = value;
  return worst;
}

const unbindNothing = (): void => {};

/** The default when no metrics are configured: every call is an empty function, so the hot path pays nothing. */
export const noopMetrics: BillingMetricsRecorder = Object.freeze({
  decision() {},
  checkDuration() {},
  cache() {},
  breakerTransition() {},
  settlement() {},
  settlementRetry() {},
  bindGauges: () => unbindNothing,
});

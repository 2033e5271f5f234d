// Prometheus metrics of the billing chain on a caller's prom-client registry; labels never name a user or a key.
import { register as defaultRegistry, Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { BreakerState } from './breaker.js';
import type { CheckName, CheckOutcome } from './decisions.js';
import { BillingConfigError, parseOptions, v } from './options.js';
import type { CacheEntityKind } from './types.js';

/** How a check ended, as counted: a shadowed check that would have denied counts `shadow_deny`. */
export type DecisionOutcomeLabel = CheckOutcome | 'shadow_deny';
export type CacheResultLabel = 'hit' | 'miss' | 'error';
export type SettlementResultLabel = 'stored' | 'duplicate' | 'conflict' | 'rejected' | 'failed';

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
  /** Registers the scrape-time sources; the returned function detaches them (call it at close). */
  bindGauges(sources: BillingGaugeSources): () => void;
}

// Every label value is known up front. The `satisfies` records make the compiler flag a new check,
// entity or state that is missing here; unknown values are never turned into new series.
const CHECKS = Object.keys({
  breaker: 1, balance: 1, subscription: 1, platformQuota: 1, apiKeyWindows: 1, reservation: 1, rpm: 1,
} satisfies Record<CheckName, 1>) as CheckName[];
const OUTCOMES = Object.keys({
  allowed: 1, denied: 1, skipped: 1, failed_open: 1, shadow_deny: 1,
} satisfies Record<DecisionOutcomeLabel, 1>) as DecisionOutcomeLabel[];
const ENTITIES = Object.keys({
  balance: 1, subscription: 1, apiKeyWindows: 1, platformQuota: 1, rpmOverride: 1,
} satisfies Record<CacheEntityKind, 1>) as CacheEntityKind[];
const CACHE_RESULTS: readonly CacheResultLabel[] = ['hit', 'miss', 'error'];
const SETTLEMENT_RESULTS: readonly SettlementResultLabel[] = ['stored', 'duplicate', 'conflict', 'rejected', 'failed'];
/** The gauge's encoding: the higher, the worse, so several breakers on one registry report the worst. */
const BREAKER_STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const satisfies Record<BreakerState, number>;
const BREAKER_STATES = Object.keys(BREAKER_STATE_VALUE) as BreakerState[];

/** Warm checks take tens of microseconds (memory cache) to a few ms (Redis round trips); 100 ms is an outage. */
const CHECK_DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

const PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/;

const DEFAULTS: Readonly<Required<BillingMetricsOptions>> = Object.freeze({ registry: defaultRegistry, prefix: 'billing_' });

/** Metrics this module created, so a second BillingMetrics reuses them and never adopts someone else's. */
const owned = new WeakSet<object>();

/** Scrape-time sources per pull metric; every BillingMetrics bound to it contributes. */
type Sources = Set<() => number>;
const sourcesOf = new WeakMap<object, Sources>();

interface Child {
  inc(value?: number): void;
}
interface ObserveChild {
  observe(value: number): void;
}

export class BillingMetrics implements BillingMetricsRecorder {
  readonly registry: Registry;
  readonly prefix: string;
  readonly #decisions = new Map<string, Map<string, Child>>();
  readonly #durations = new Map<string, ObserveChild>();
  readonly #cache = new Map<string, Map<string, Child>>();
  readonly #transitions = new Map<string, Map<string, Child>>();
  readonly #settlements = new Map<string, Child>();
  readonly #retries: Counter;
  readonly #writeQueueDepth: Gauge;
  readonly #writeQueueDropped: Counter;
  readonly #openReservations: Gauge;
  readonly #breakerState: Gauge;

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

    const decisions = this.#counter(`${p}decisions_total`, 'Billing check decisions by check and outcome.', ['check', 'outcome']);
    for (const check of CHECKS) {
      this.#decisions.set(check, new Map(OUTCOMES.map((outcome) => [outcome, zeroed(decisions.labels(check, outcome))])));
    }
    const durations = this.#histogram(`${p}check_duration_seconds`, 'Time spent in each billing check, in seconds.', ['check']);
    for (const check of CHECKS) this.#durations.set(check, durations.labels(check));

    const cache = this.#counter(`${p}cache_requests_total`, 'Billing cache reads by entity and result.', ['entity', 'result']);
    for (const entity of ENTITIES) {
      this.#cache.set(entity, new Map(CACHE_RESULTS.map((result) => [result, zeroed(cache.labels(entity, result))])));
    }

    const transitions = this.#counter(`${p}breaker_transitions_total`, 'Circuit breaker state changes.', ['from', 'to']);
    for (const from of BREAKER_STATES) {
      this.#transitions.set(from, new Map(BREAKER_STATES.filter((to) => to !== from).map((to) => [to, zeroed(transitions.labels(from, to))])));
    }

    const settlements = this.#counter(`${p}settlements_total`, 'Settlements by result.', ['result']);
    for (const result of SETTLEMENT_RESULTS) this.#settlements.set(result, zeroed(settlements.labels(result)));
    this.#retries = this.#counter(`${p}settlement_retries_total`, 'Settlement attempts retried after a store failure.', []);

    this.#writeQueueDepth = this.#pullGauge(`${p}write_queue_depth`, 'Cache write tasks queued, not yet running.', sum);
    this.#writeQueueDropped = this.#pullCounter(`${p}write_queue_dropped_total`, 'Best-effort cache fills dropped because the write queue was full or closed.');
    this.#openReservations = this.#pullGauge(`${p}open_reservations`, 'Cost reservations held by this process, not yet settled or released.', sum);
    this.#breakerState = this.#pullGauge(`${p}breaker_state`, 'Circuit breaker state: 0 closed, 1 half-open, 2 open (the worst of the bound breakers).', max);
  }

  decision(check: CheckName, outcome: DecisionOutcomeLabel): void {
    this.#decisions.get(check)?.get(outcome)?.inc();
  }

  checkDuration(check: CheckName, seconds: number): void {
    // prom-client throws on a non-finite value; a metrics call must never fail a request.
    if (Number.isFinite(seconds) && seconds >= 0) this.#durations.get(check)?.observe(seconds);
  }

  cache(entity: CacheEntityKind, result: CacheResultLabel): void {
    this.#cache.get(entity)?.get(result)?.inc();
  }

  breakerTransition(from: BreakerState, to: BreakerState): void {
    this.#transitions.get(from)?.get(to)?.inc();
  }

  settlement(result: SettlementResultLabel): void {
    this.#settlements.get(result)?.inc();
  }

  settlementRetry(): void {
    this.#retries.inc();
  }

  bindGauges(sources: BillingGaugeSources): () => void {
    const { writeQueueDepth, writeQueueDropped, openReservations, breakerState } = sources;
    // Checked before anything is bound, so a bad call leaves no half-bound sources behind.
    for (const [name, source] of Object.entries({ writeQueueDepth, writeQueueDropped, breakerState })) {
      if (typeof source !== 'function') throw new TypeError(`bindGauges: ${name} must be a function, got ${typeof source}`);
    }
    if (openReservations !== undefined && typeof openReservations !== 'function') {
      throw new TypeError(`bindGauges: openReservations must be a function when given, got ${typeof openReservations}`);
    }
    const bound: [object, () => number][] = [
      [this.#writeQueueDepth, writeQueueDepth],
      [this.#writeQueueDropped, writeQueueDropped],
      [this.#breakerState, () => BREAKER_STATE_VALUE[breakerState()]],
    ];
    if (openReservations) bound.push([this.#openReservations, openReservations]);
    for (const [metric, read] of bound) sourcesOf.get(metric)?.add(read);
    return () => {
      for (const [metric, read] of bound) sourcesOf.get(metric)?.delete(read);
    };
  }

  /** The metric registered under `name` if this module made it with the same type and labels, else a new one. */
  #reuse<T>(name: string, type: string, labelNames: readonly string[]): T | undefined {
    const existing = this.registry.getSingleMetric(name) as unknown as { type?: string; labelNames?: readonly string[] } | undefined;
    if (existing === undefined) return undefined;
    const sameLabels = existing.labelNames?.length === labelNames.length && labelNames.every((l, i) => existing.labelNames?.[i] === l);
    if (!owned.has(existing) || existing.type !== type || !sameLabels) {
      throw new BillingConfigError(
        'metrics.registry',
        `metric ${name} is already registered by something else; pass another metrics.prefix or registry`,
      );
    }
    return existing as T;
  }

  #counter<L extends string>(name: string, help: string, labelNames: readonly L[], collect?: (this: Counter) => void): Counter<L> {
    const metric = this.#reuse<Counter<L>>(name, 'counter', labelNames)
      ?? new Counter<L>({ name, help, labelNames, registers: [this.registry], ...(collect ? { collect } : {}) });
    owned.add(metric);
    return metric;
  }

  /** The per-check duration histogram; its series start at zero when it is created (zero() on a reused one would wipe it). */
  #histogram(name: string, help: string, labelNames: readonly ['check']): Histogram<'check'> {
    let metric = this.#reuse<Histogram<'check'>>(name, 'histogram', labelNames);
    if (!metric) {
      metric = new Histogram({ name, help, labelNames, buckets: CHECK_DURATION_BUCKETS, registers: [this.registry] });
      for (const check of CHECKS) metric.zero({ check });
      owned.add(metric);
    }
    return metric;
  }

  #pullGauge(name: string, help: string, combine: (values: number[]) => number): Gauge {
    let metric = this.#reuse<Gauge>(name, 'gauge', []);
    if (!metric) {
      const sources: Sources = new Set();
      metric = new Gauge({ name, help, registers: [this.registry], collect(this: Gauge) { this.set(combine(read(sources))); } });
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
      metric = this.#counter(name, help, [], function collect(this: Counter) {
        this.reset();
        this.inc(sum(read(sources)));
      });
      sourcesOf.set(metric, sources);
    }
    return metric;
  }
}

/**
 * Makes the series exist at 0 from the start (inc(0) adds nothing to a reused one), so rate() and
 * absent-series alerts work before the first event.
 */
function zeroed(child: Child): Child {
  child.inc(0);
  return child;
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

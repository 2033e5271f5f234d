// Options of createBillingCore: every option documented once here, with its default and unit.
import type { CircuitBreakerOptions } from './breaker.js';
import type { SettlementBatchingOptions } from './group-commit.js';
import { systemClock } from './clock.js';
import { silentLogger } from './log.js';
import { noopMetrics, type BillingMetricsRecorder } from './metrics.js';
import { parseOptions, v } from './options.js';
import type { BillingCache, BillingLogger, BillingStore, Clock, Usd } from './types.js';
import type { WriteQueueOptions } from './write-queue.js';

export interface BillingCoreOptions {
  /** Source of truth (required): a KnexBillingStore over PostgreSQL or SQLite. */
  store: BillingStore;
  /** Shared hot cache and counter store; omit for store-only mode (rpmLimit then does nothing). */
  cache?: BillingCache;
  /** 'standard' (default) runs the checks; 'simple' runs none and settlements charge nothing (docs/behaviour.md#the-chain-in-order). */
  runMode?: 'standard' | 'simple';
  /** IANA zone that defines "start of day" and "start of week" (Monday). Default 'UTC'. */
  timezone?: string;
  /** Balance below this (when > 0) is insufficient; a balance exactly at it passes. USD, default '0.000001'. */
  minimumBalanceReserve?: Usd;
  /** docs/behaviour.md#circuit-breaker. Defaults: enabled, failureThreshold 5, resetTimeoutMs 30000, halfOpenRequests 3. */
  circuitBreaker?: CircuitBreakerOptions;
  /** Asynchronous cache writes (docs/behaviour.md#background-cache-writes). Defaults: capacity 1000 tasks, workers 10, taskTimeoutMs 2000. */
  writeQueue?: WriteQueueOptions;
  /** Timeout of one shared store load (balance, subscription, quota, key windows), ms. Default 3000. */
  loadTimeoutMs?: number;
  /** Timeout of background work such as key-window resets, ms. Default 2000. */
  backgroundTimeoutMs?: number;
  /**
   * Group commit of settlements (docs/group-commit.md): settlements arriving while a transaction is
   * in flight share the next one. Defaults: maxBatchSize 100 (1 = off), maxBatchesInFlight 2.
   */
  settlementBatching?: SettlementBatchingOptions;
  /** First delay between settlement retries after a store failure, ms; doubles up to 5000. Default 100. */
  settlementRetryDelayMs?: number;
  /** How long close() keeps retrying pending settlements before giving up on them (logged), ms. Default 30000. */
  closeTimeoutMs?: number;
  /**
   * How long a hold (reservation, concurrency slot) lives without renewal, ms. While its request runs
   * it is renewed every third of this (docs/holds.md), so only holds of a process that died or hung
   * expire: they stop counting within this time. At least 300. Default 30000.
   */
  reservationTtlMs?: number;
  /** Prometheus metrics: `new BillingMetrics({ registry })`; default none (nothing is counted). */
  metrics?: BillingMetricsRecorder;
  /** pino-compatible logger; default silent. */
  logger?: BillingLogger;
  /** `{ now(): number }` in epoch ms; default Date.now. One clock for everything computed in the process. */
  clock?: Clock;
}

export interface ResolvedCoreOptions {
  store: BillingStore;
  cache: BillingCache | undefined;
  runMode: 'standard' | 'simple';
  timezone: string;
  minimumBalanceReserve: bigint;
  circuitBreaker: CircuitBreakerOptions | undefined;
  writeQueue: WriteQueueOptions | undefined;
  settlementBatching: SettlementBatchingOptions | undefined;
  loadTimeoutMs: number;
  backgroundTimeoutMs: number;
  settlementRetryDelayMs: number;
  closeTimeoutMs: number;
  reservationTtlMs: number;
  metrics: BillingMetricsRecorder;
  logger: BillingLogger;
  clock: Clock;
}

const DEFAULTS: Readonly<Omit<ResolvedCoreOptions, 'store' | 'minimumBalanceReserve'> & { store: undefined; minimumBalanceReserve: Usd }> = Object.freeze({
  store: undefined,
  cache: undefined,
  runMode: 'standard',
  timezone: 'UTC',
  minimumBalanceReserve: '0.000001',
  circuitBreaker: undefined,
  writeQueue: undefined,
  settlementBatching: undefined,
  loadTimeoutMs: 3000,
  backgroundTimeoutMs: 2000,
  settlementRetryDelayMs: 100,
  closeTimeoutMs: 30_000,
  reservationTtlMs: 30_000,
  metrics: noopMetrics,
  logger: silentLogger,
  clock: systemClock,
});

/** Renewed every third of it: below this a renewal would be due before its predecessor's reply. */
const MIN_RESERVATION_TTL_MS = 300;

const STORE_METHODS = ['getBalance', 'getActiveSubscription', 'getApiKeyWindows', 'getPlatformQuota', 'getRpmOverride', 'settle'];
const CACHE_METHODS = ['readBatch', 'fill', 'put', 'invalidate', 'rpmHit', 'reserve', 'release', 'renew', 'listLeases'];

/** Parses and validates once, at construction; throws BillingConfigError naming the option. */
export function parseCoreOptions(input: unknown): ResolvedCoreOptions {
  return parseOptions<ResolvedCoreOptions>('createBillingCore', input, DEFAULTS as unknown as ResolvedCoreOptions, {
    store: v.object<BillingStore>(...STORE_METHODS),
    cache: v.optional(v.object<BillingCache>(...CACHE_METHODS)),
    runMode: v.oneOf('standard', 'simple'),
    timezone: v.timezone(),
    minimumBalanceReserve: v.nonNegativeUsd(),
    circuitBreaker: v.optional(v.object<CircuitBreakerOptions>()),
    writeQueue: v.optional(v.object<WriteQueueOptions>()),
    settlementBatching: v.optional(v.object<SettlementBatchingOptions>()),
    loadTimeoutMs: v.positiveInt(600_000),
    backgroundTimeoutMs: v.positiveInt(600_000),
    settlementRetryDelayMs: v.positiveInt(60_000),
    closeTimeoutMs: v.nonNegativeInt(3_600_000),
    reservationTtlMs: v.intInRange(MIN_RESERVATION_TTL_MS, 86_400_000),
    metrics: v.object<BillingMetricsRecorder>('decision', 'checkDuration', 'cache', 'breakerTransition', 'settlement', 'settlementRetry', 'bindGauges'),
    logger: v.object<BillingLogger>('debug', 'info', 'warn', 'error'),
    clock: v.object<Clock>('now'),
  });
}

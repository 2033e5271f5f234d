// The BillingCore service: wires store, cache, breaker, single-flight and write queue, and offers
// check, settle, invalidations, admin writes, reads for dashboards, health and close (docs/architecture.md).
import { BillingAdmin } from './admin.js';
import { BackgroundTasks } from './background-tasks.js';
import { BillingRequest, type BillingDecision, type SignalSource } from './billing-request.js';
import type { CheckName } from './decisions.js';
import { CircuitBreaker } from './breaker.js';
import { CacheSync } from './cache-sync.js';
import type { CoreInternals } from './core-internals.js';
import { parseCoreOptions, type BillingCoreOptions, type ResolvedCoreOptions } from './core-options.js';
import { BillingError } from './errors.js';
import { GroupCommit } from './group-commit.js';
import { extendHold, type HoldExtensionResult } from './hold-extension.js';
import { LeaseRenewer } from './lease-renewer.js';
import { ThrottledLog } from './log.js';
import { noopMetrics } from './metrics.js';
import { formatUsd, parseCostUsd, type Usd } from './money.js';
import { Settler, type SettleRequest, type SettlementReceipt } from './settlement.js';
import { SingleFlight } from './single-flight.js';
import { STORE_HOLD_SWEEP_MS, sweepExpiredStoreHolds } from './store-holds.js';
import { normalizeSubject, type NormalizedSubject } from './subject.js';
import type { BillingId, BillingSubject, CacheEntityRef, TimeContext } from './types.js';
import { BillingValidationError, normalizeId, normalizePlatform } from './validate.js';
import { apiKeyWindowSpecs } from './window-specs.js';
import { effectiveUsage, windowResetAt } from './windows.js';
import { WriteQueue } from './write-queue.js';

/**
 * The holds check() took (the estimate, concurrency slots); pass its id to settle(), or release() it.
 * Until then the core renews it (docs/holds.md, "Renewal"): one that is neither leaks until the process exits.
 */
export interface ReservationHandle {
  id: string;
  /** What it held when check() returned; extend() reports the amount after each growth. */
  amountUsd: string;
  expiresAt: string;
  release(): void;
  /** Grows the hold by `amountUsd`, all or nothing (docs/stream-metering.md); rejects only for a bad amount. */
  extend(amountUsd: Usd): Promise<HoldExtensionResult>;
}

export type CheckResult =
  | { allowed: true; checks: BillingDecision['checks']; reservation?: ReservationHandle }
  | { allowed: false; error: BillingError; checks: BillingDecision['checks'] };

export interface CheckOptions {
  /** Estimated cost to reserve against every limit until settle(). */
  estimateUsd?: Usd;
  /** Checks evaluated and counted but never blocking (shadow mode). */
  shadow?: readonly CheckName[];
}

export interface UsageEntry {
  requestId: string;
  costUsd: string;
  mode: 'balance' | 'subscription';
  platform: string | null;
  model: string | null;
  inputTokens: number | null;
  outputTokens: number | null;
  createdAt: string;
}

export interface ApiKeyWindowsView {
  windows: { window: '5h' | '1d' | '7d'; usageUsd: string; resetsAt: string | null }[];
}

const HEALTH_TIMEOUT_MS = 1000;
/**
 * One request in this many has its checks timed for billing_check_duration_seconds (a power of
 * two). 16, not 8: timing one request in 8 was over half of what metrics cost a warm request
 * (counted with callgrind), and one in 16 still times dozens of requests per second at any rate
 * worth measuring.
 */
export const CHECK_TIMING_SAMPLE = 16;

export class BillingCore {
  readonly admin: BillingAdmin;
  readonly #internals: CoreInternals;
  readonly #settler: Settler;
  /** Requests whose reservation check() handed out, by lease id, until it is settled or released. */
  readonly #checked = new Map<string, BillingRequest>();
  readonly #unbindGauges: () => void;
  readonly #holdSweep: NodeJS.Timeout;
  #closed: Promise<void> | undefined;

  constructor(options: BillingCoreOptions) {
    const resolved: ResolvedCoreOptions = parseCoreOptions(options);
    const { clock, logger, timezone } = resolved;
    const warnings = new ThrottledLog(logger, clock);
    const queue = new WriteQueue(resolved.writeQueue, { clock, logger });
    const loads = new SingleFlight<string, unknown>({ timeoutMs: resolved.loadTimeoutMs });
    const { metrics } = resolved;
    const breaker = new CircuitBreaker(resolved.circuitBreaker, { clock, logger, onStateChange: (from, to) => metrics.breakerTransition(from, to) });
    const openLeases = { count: 0, slots: 0 };
    const groupCommit = new GroupCommit(resolved.store, resolved.settlementBatching, { batch: (size, seconds) => metrics.settlementBatch?.(size, seconds) });
    let timingCounter = 0;
    this.#unbindGauges = metrics.bindGauges({
      writeQueueDepth: () => queue.depth,
      writeQueueDropped: () => queue.dropped,
      openReservations: () => openLeases.count,
      concurrencySlots: () => openLeases.slots,
      settlementsWaiting: () => groupCommit.waiting,
      breakerState: () => breaker.state,
    });
    this.#internals = {
      options: resolved,
      store: resolved.store,
      cache: resolved.cache,
      breaker,
      metrics,
      sampleTiming: metrics === noopMetrics ? () => false : () => (++timingCounter & (CHECK_TIMING_SAMPLE - 1)) === 0,
      openLeases,
      renewer: new LeaseRenewer({ cache: resolved.cache, store: resolved.store, ttlMs: resolved.reservationTtlMs, clock, warnings }),
      loads,
      queue,
      cacheSync: new CacheSync(resolved.cache, queue, warnings, loads),
      groupCommit,
      background: new BackgroundTasks(resolved.backgroundTimeoutMs, warnings),
      warnings,
      time: (): TimeContext => ({ nowMs: clock.now(), timezone }),
    };
    this.#settler = new Settler(this.#internals);
    this.admin = new BillingAdmin(this.#internals);
    const internals = this.#internals;
    // Holds of a process that died are taken back by whichever process sweeps first (docs/holds.md).
    this.#holdSweep = setInterval(() => internals.background.run('sweepExpiredStoreHolds', () => sweepExpiredStoreHolds(internals)), STORE_HOLD_SWEEP_MS);
    this.#holdSweep.unref();
  }

  get options(): ResolvedCoreOptions {
    return this.#internals.options;
  }

  /** The breaker's state, for health pages and metrics. */
  get breakerState(): string {
    return this.#internals.breaker.state;
  }

  /** @internal Starts one request's pass through the checks (used by the middleware). */
  beginRequest(subject: NormalizedSubject, signal?: SignalSource, estimateUnits?: bigint): BillingRequest {
    return new BillingRequest(this.#internals, subject, signal, estimateUnits);
  }

  /**
   * The whole chain without HTTP: breaker, balance or subscription, quota, key windows, the
   * reservation when an estimate is given, RPM.
   */
  async check(subject: BillingSubject, options: CheckOptions = {}): Promise<CheckResult> {
    const estimate = options.estimateUsd === undefined ? undefined : parseCostUsd(options.estimateUsd, 'estimateUsd');
    const request = this.beginRequest(normalizeSubject(subject), undefined, estimate);
    try {
      await request.runChain(new Set(options.shadow ?? []));
    } catch (error) {
      if (error instanceof BillingError) return { allowed: false, error, checks: request.decision.checks };
      throw error;
    }
    const lease = request.lease;
    if (!lease) return { allowed: true, checks: request.decision.checks };
    this.#checked.set(lease.leaseId, request);
    return {
      allowed: true,
      checks: request.decision.checks,
      reservation: {
        id: lease.leaseId,
        amountUsd: formatUsd(lease.amountUnits),
        expiresAt: new Date(lease.expiresAtMs).toISOString(),
        release: () => {
          this.#checked.delete(lease.leaseId);
          request.releaseLease();
        },
        extend: (amountUsd) => extendHold(request, amountUsd),
      },
    };
  }

  /**
   * Records what a finished request cost (docs/behaviour.md#settlement); idempotent by (requestId, API key). With the
   * `reservationId` that check() returned, the reservation is replaced by the actual cost.
   */
  settle(request: SettleRequest & { reservationId?: string }): Promise<SettlementReceipt> {
    // Bad input rejects like every other async method, never throws synchronously.
    if (request === null || typeof request !== 'object') return Promise.reject(new BillingValidationError('request', 'settle() needs a settlement object'));
    // The request check() held it for hands it over, so its hold is no longer counted as open here.
    const owner = typeof request.reservationId === 'string' ? this.#checked.get(request.reservationId) : undefined;
    if (owner) {
      this.#checked.delete(request.reservationId!);
      owner.takeLease();
    }
    return this.settleFor(request, undefined, request.reservationId);
  }

  /** @internal settle() with an already normalised subject and the request's lease (ctx.state.billing.settle). */
  settleFor(request: SettleRequest, subject: NormalizedSubject | undefined, leaseId?: string): Promise<SettlementReceipt> {
    if (this.#closed) return Promise.reject(new BillingError('BILLING_SERVICE_ERROR', { message: 'Billing core is closed' }));
    let input: ReturnType<Settler['prepare']>;
    try {
      input = this.#settler.prepare(request, subject);
    } catch (err) {
      this.#internals.metrics.settlement('rejected');
      return Promise.reject(err);
    }
    return this.#settler.settle(input, leaseId);
  }

  /** The user's open reservations (for dashboards and tests); empty without a cache. */
  async listReservations(userId: BillingId): Promise<{ id: string; amountUsd: string; expiresAt: string }[]> {
    const cache = this.#internals.cache;
    if (!cache) return [];
    const leases = await cache.listLeases(normalizeId(userId, 'userId'));
    return leases.map((lease) => ({ id: lease.leaseId, amountUsd: formatUsd(lease.amount), expiresAt: new Date(lease.expiresAtMs).toISOString() }));
  }

  async invalidateBalance(userId: BillingId): Promise<void> {
    return this.#invalidate({ kind: 'balance', userId: normalizeId(userId, 'userId') });
  }

  async invalidateSubscription(userId: BillingId, groupId: BillingId): Promise<void> {
    return this.#invalidate({ kind: 'subscription', userId: normalizeId(userId, 'userId'), groupId: normalizeId(groupId, 'groupId') });
  }

  async invalidateApiKeyWindows(userId: BillingId, apiKeyId: BillingId): Promise<void> {
    return this.#invalidate({ kind: 'apiKeyWindows', userId: normalizeId(userId, 'userId'), apiKeyId: normalizeId(apiKeyId, 'apiKeyId') });
  }

  async invalidatePlatformQuota(userId: BillingId, platform: string): Promise<void> {
    return this.#invalidate({ kind: 'platformQuota', userId: normalizeId(userId, 'userId'), platform: normalizePlatform(platform) });
  }

  async invalidateRpmOverride(userId: BillingId, groupId: BillingId): Promise<void> {
    return this.#invalidate({ kind: 'rpmOverride', userId: normalizeId(userId, 'userId'), groupId: normalizeId(groupId, 'groupId') });
  }

  /** The balance from the store, as a decimal string; null when the user has no account. */
  async getBalance(userId: BillingId): Promise<string | null> {
    const entity = await this.#internals.store.getBalance(normalizeId(userId, 'userId'));
    return entity === null ? null : formatUsd(entity.balance);
  }

  /** The key's spend windows from the store, expired windows shown as 0. */
  async getApiKeyWindows(userId: BillingId, apiKeyId: BillingId): Promise<ApiKeyWindowsView> {
    const entity = await this.#internals.store.getApiKeyWindows(normalizeId(userId, 'userId'), normalizeId(apiKeyId, 'apiKeyId'));
    const time = this.#internals.time();
    // Limits do not matter here (0 = none): only each window's effective usage and reset.
    const specs = apiKeyWindowSpecs(entity, { limit5h: 0n, limit1d: 0n, limit7d: 0n });
    return {
      windows: specs.map(({ window, rule, usage, startMs }) => ({
        window: window as '5h' | '1d' | '7d',
        usageUsd: formatUsd(effectiveUsage(rule, usage, startMs, time)),
        resetsAt: startMs === null ? null : new Date(windowResetAt(rule, startMs, time)).toISOString(),
      })),
    };
  }

  /** The user's most recent usage-log rows, newest first. */
  async listUsage(userId: BillingId, limit = 20): Promise<UsageEntry[]> {
    const rows = await this.#internals.store.listUsage(normalizeId(userId, 'userId'), Math.max(1, Math.min(200, Math.trunc(limit) || 20)));
    return rows.map((row) => ({
      requestId: row.requestId,
      costUsd: formatUsd(row.costUnits),
      mode: row.mode,
      platform: row.platform,
      model: row.model,
      inputTokens: row.inputTokens,
      outputTokens: row.outputTokens,
      createdAt: new Date(row.createdAtMs).toISOString(),
    }));
  }

  /** Reachability of the store and the cache (null when no cache is configured). */
  async health(): Promise<{ store: boolean; cache: boolean | null; breaker: string }> {
    const probe = (ping: () => Promise<void>) =>
      Promise.race([
        ping().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((resolve) => setTimeout(resolve, HEALTH_TIMEOUT_MS, false).unref()),
      ]);
    const { store, cache } = this.#internals;
    const [storeOk, cacheOk] = await Promise.all([probe(() => store.ping()), cache ? probe(() => cache.ping()) : Promise.resolve(null)]);
    return { store: storeOk, cache: cacheOk, breaker: this.#internals.breaker.state };
  }

  /**
   * Stops taking settlements, then waits for pending settlements (retrying up to closeTimeoutMs),
   * background work, shared loads and the write queue. Does not close the caller's Redis or knex.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const { background, loads, queue, cacheSync, options, warnings } = this.#internals;
      clearInterval(this.#holdSweep);
      await this.#settler.drain(options.closeTimeoutMs);
      await Promise.all([background.idle(), loads.idle()]);
      // After the drain: settlements release the holds they replace.
      this.#internals.renewer.close();
      await queue.close();
      await cacheSync.close();
      warnings.flush();
      this.#unbindGauges();
    })();
    return this.#closed;
  }

  #invalidate(ref: CacheEntityRef): Promise<void> {
    return this.#internals.cacheSync.invalidate(ref);
  }
}

/** Creates the billing core shared by the middleware of one application. */
export function createBillingCore(options: BillingCoreOptions): BillingCore {
  return new BillingCore(options);
}

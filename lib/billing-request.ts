// One request's pass through the checks (docs/behaviour.md): one batched cache read shared by every check,
// store loads through single-flight on a miss, and a record of what each check decided.
import { randomUUID } from 'node:crypto';
import { errorText } from './background-tasks.js';
import type { CircuitBreaker } from './breaker.js';
import { refKey } from './cache-sync.js';
import type { CoreInternals } from './core-internals.js';
import {
  CheckDenial,
  apiKeyWindowsNeedReset,
  decideApiKeyWindows,
  decideBalance,
  decidePlatformQuota,
  decideSubscription,
  platformQuotaSentinel,
  toCheckRecord,
  type CheckEvaluation,
  type CheckName,
  type CheckRecord,
  type WindowEvaluation,
} from './decisions.js';
import { BillingError, type BillingErrorCode } from './errors.js';
import { formatUsd, MAX_USD_UNITS, MoneyError } from './money.js';
import { holdInStore, releaseLease, storeCanHold } from './store-holds.js';
import { nextTurn } from './next-turn.js';
import type { BillingMetricsRecorder } from './metrics.js';
import { apiKeyDimensions, balanceDimension, platformQuotaDimensions, subscriptionDimensions, type PlannedDimension } from './reservation-plan.js';
import type { NormalizedSubject } from './subject.js';
import type {
  ApiKeyWindowsEntity,
  BillingCache,
  CacheBatchRequest,
  CacheBatchResult,
  CacheEntityKind,
  CacheEntityMap,
  CacheEntityRef,
  CacheRead,
  PlatformQuotaEntity,
  ReserveRequest,
  ReserveResult,
  RpmOverride,
  RpmRequest,
  RpmResult,
  SlotDimension,
  TimeContext,
} from './types.js';

/** Errors thrown by a check as its denial; the middleware renders exactly these. */
const denials = new WeakSet<BillingError>();

export function isCheckDenial(error: unknown): error is BillingError {
  return error instanceof BillingError && denials.has(error);
}

/** What the chain decided for one request (ctx.state.billing.decision). */
export interface BillingDecision {
  readonly allowed: boolean;
  /** Each check that ran, in order, with its outcome, limits, usage and reset times. */
  readonly checks: CheckRecord[];
}

/**
 * The decision as the checks build it: evaluations in exact units, formatted into the public
 * records only when `checks` is read (few requests read them; every response's RateLimit fields
 * read the evaluations).
 */
export class DecisionLog implements BillingDecision {
  allowed = true;
  readonly evaluations: CheckEvaluation[] = [];
  readonly #records: CheckRecord[] = [];

  get checks(): CheckRecord[] {
    const { evaluations } = this;
    for (let i = this.#records.length; i < evaluations.length; i++) this.#records.push(toCheckRecord(evaluations[i]!));
    return this.#records;
  }

  toJSON(): { allowed: boolean; checks: CheckRecord[] } {
    return { allowed: this.allowed, checks: this.checks };
  }
}

/** The check methods of a request, in chain order, and the name each records under. */
export type CheckMethod = 'breaker' | 'balance' | 'subscription' | 'platformQuota' | 'apiKeyWindows' | 'reserve' | 'rpm';
export const CHECK_NAMES: Readonly<Record<CheckMethod, CheckName>> = {
  breaker: 'breaker',
  balance: 'balance',
  subscription: 'subscription',
  platformQuota: 'platformQuota',
  apiKeyWindows: 'apiKeyWindows',
  reserve: 'reservation',
  rpm: 'rpm',
};
/** The chain's order: breaker first, RPM last, the reservation just before it. */
export const CHECK_METHODS = Object.keys(CHECK_NAMES) as readonly CheckMethod[];

/** Which entity each field of a batch request reads (for the cache metrics of a failed read). */
const BATCH_ENTITIES: readonly [keyof CacheBatchRequest, CacheEntityKind][] = [
  ['balance', 'balance'],
  ['subscriptionGroupId', 'subscription'],
  ['apiKeyId', 'apiKeyWindows'],
  ['platform', 'platformQuota'],
  ['rpmOverrideGroupId', 'rpmOverride'],
];

/**
 * Counts each entity a batched read returned as a hit or a miss. Field by field rather than a loop
 * over BATCH_ENTITIES: on every request, a lookup by a varying key is a megamorphic load.
 */
function countCacheReads(metrics: BillingMetricsRecorder, result: CacheBatchResult): void {
  countCacheRead(metrics, 'balance', result.balance);
  countCacheRead(metrics, 'subscription', result.subscription);
  countCacheRead(metrics, 'apiKeyWindows', result.apiKeyWindows);
  countCacheRead(metrics, 'platformQuota', result.platformQuota);
  countCacheRead(metrics, 'rpmOverride', result.rpmOverride);
}

function countCacheRead(metrics: BillingMetricsRecorder, entity: CacheEntityKind, read: CacheRead<unknown> | undefined): void {
  if (read) metrics.cache(entity, read.hit ? 'hit' : 'miss');
}

/** Lazily provides the request's cancellation signal (only quota loads need it). */
export type SignalSource = () => AbortSignal | undefined;

/** The request's holds: an estimated cost held against every limit, and its concurrency slots, until settled or released. */
export interface Lease {
  leaseId: string;
  /** 0n when the lease holds slots only. */
  amountUnits: bigint;
  expiresAtMs: number;
  /** Concurrency slots it holds. */
  slots: number;
}

/**
 * How a request to grow the hold ended (docs/stream-metering.md). Refused: a limit has no room for
 * the extra amount (its code and dimension say which); the hold keeps what it had. Unavailable: the
 * request holds nothing that can grow (no hold, a hold in the store, ended or expired), or the cache
 * failed — a hold grows only where it can be counted against every limit.
 */
export type HoldExtension =
  | { extended: true; heldUnits: bigint }
  | { extended: false; reason: 'refused'; code: BillingErrorCode; dimension: string }
  | { extended: false; reason: 'unavailable'; detail: HoldUnavailable };

/**
 * Why a hold cannot grow: there is none, it is held in the store, it ended (settled, released,
 * expired), a row it is held on is not in the cache (so not checkable now), or the cache failed.
 */
export type HoldUnavailable = 'no_hold' | 'store_hold' | 'ended' | 'stale' | 'cache_error';

/** A concurrency slot the request takes, and whose cap it is. */
interface PlannedSlot {
  scope: 'user' | 'apiKey';
  slot: SlotDimension;
}

/** A request refused for concurrency may retry as soon as another one ends: usually within a second or so. */
export const CONCURRENCY_RETRY_AFTER_SEC = 1;

export class BillingRequest {
  readonly decision = new DecisionLog();
  readonly time: TimeContext;
  /** The reservation this request holds, once reserve() succeeded. */
  lease: Lease | undefined;
  #batch: Promise<CacheBatchResult | null> | undefined;
  /** The batched read's result once it has arrived (null: no cache, or the read failed); undefined until then. */
  #batchValue: CacheBatchResult | null | undefined;
  /** Limits a reservation must fit under, collected by the checks only when there is an estimate. */
  readonly #plan: PlannedDimension[] = [];
  #leaseHandedOver = false;
  /** Whether the holds step has run (mounting both reserveEstimate and concurrencyLimit takes them once). */
  #holdsTaken = false;
  /** The reserve that took the lease (without its RPM hit), and where: what a hold extension repeats. */
  #held: { request: ReserveRequest; source: 'cache' | 'store'; slots: PlannedSlot[] } | undefined;
  /** Extensions run one at a time, each on the amount the last one left. */
  #extending: Promise<unknown> = Promise.resolve();
  /** The whole chain's shadowed checks (runChain), so the holds step can shadow its two parts separately. */
  #shadowChecks: ReadonlySet<CheckName> | undefined;
  /** Whether the check now running is in shadow mode. */
  #shadow = false;
  /** Set by runChain: every check runs, in order, none in shadow mode, so RPM is sure to run last. */
  #wholeChain = false;
  /** The RPM hit the batched read already applied (Redis: one round trip for a warm request). */
  #countedRpm: RpmResult | undefined;
  /** Why a batched read that offered to count RPM failed: whether it counted is unknown. */
  #countFailure: unknown;
  /** Whether this request's check durations go into the histogram (sampled). */
  readonly #timed: boolean;
  /**
   * Decisions #countIfPasses made, as entity, decision, entity, decision …: when the read confirms
   * that data, the checks get the same entity objects on the same time and reuse them.
   */
  #decided: (object | CheckEvaluation | CheckDenial)[] | undefined;

  constructor(
    private readonly core: CoreInternals,
    readonly subject: NormalizedSubject,
    private readonly signal: SignalSource = () => undefined,
    /** Estimated cost in units, or undefined for no reservation. */
    private readonly estimate: bigint | undefined = undefined,
  ) {
    this.time = core.time();
    this.#timed = core.sampleTiming();
  }

  get simple(): boolean {
    return this.core.options.runMode === 'simple';
  }

  /**
   * Runs the whole chain in order, breaker first, RPM last (`shadow`: checks that only log and
   * count their denials). Without shadowed checks and without holds to take (no estimate, no concurrency cap), a cache that can count
   * RPM together with the batched read is allowed to (readBatchCounting): when the checks pass on
   * the data it last returned and that data is unchanged, a warm request is one round trip.
   */
  async runChain(shadow: ReadonlySet<CheckName>): Promise<void> {
    if (this.simple) return;
    const anyShadow = shadow.size !== 0;
    this.#shadowChecks = shadow;
    // Counting RPM with the read happens before the holds: only right when there are none to refuse.
    const { userMaxConcurrency, apiKeyMaxConcurrency } = this.subject;
    this.#wholeChain = !anyShadow && this.estimate === undefined && userMaxConcurrency === 0 && apiKeyMaxConcurrency === 0;
    for (const method of CHECK_METHODS) {
      // A check whose data has already arrived completes synchronously: a warm request awaits only its I/O.
      const pending = this.#step(method, anyShadow && shadow.has(CHECK_NAMES[method]));
      if (pending !== undefined) await pending;
    }
  }

  /**
   * Runs one check, timed for the metrics; in runMode 'simple' none runs. A `shadow` check is
   * evaluated, logged and counted as `shadow_deny` when it would deny, but never blocks (docs/operations.md).
   */
  async run(check: CheckMethod, shadow = false): Promise<void> {
    if (this.simple) return;
    return this.#step(check, shadow);
  }

  /**
   * One check: undefined when it completed synchronously (its data was at hand), else the promise
   * of its completion. The check methods below assume they are called through here.
   */
  #step(check: CheckMethod, shadow: boolean): void | Promise<void> {
    this.#shadow = shadow;
    const startedAt = this.#timed ? performance.now() : 0;
    let pending: void | Promise<void>;
    try {
      pending = this.#invoke(check);
    } catch (err) {
      this.#endStep(check, startedAt);
      throw err;
    }
    if (pending === undefined) return this.#endStep(check, startedAt);
    // Untimed, the check's own promise is enough: no extra promise and microtasks per awaited check.
    // #shadow then stays as it is until the next check starts, which sets it again.
    if (!this.#timed) return pending;
    return pending.finally(() => this.#endStep(check, startedAt));
  }

  /**
   * The check method by name. A switch, not this[check](): a lookup by a key that differs at every
   * step of the chain is a megamorphic keyed load, several times dearer than comparing names.
   */
  #invoke(check: CheckMethod): void | Promise<void> {
    switch (check) {
      case 'breaker':
        return this.breaker();
      case 'balance':
        return this.balance();
      case 'subscription':
        return this.subscription();
      case 'platformQuota':
        return this.platformQuota();
      case 'apiKeyWindows':
        return this.apiKeyWindows();
      case 'reserve':
        return this.reserve();
      case 'rpm':
        return this.rpm();
    }
  }

  #endStep(check: CheckMethod, startedAt: number): void {
    this.#shadow = false;
    if (this.#timed) this.core.metrics.checkDuration(CHECK_NAMES[check], (performance.now() - startedAt) / 1000);
  }

  /** docs/behaviour.md#the-chain-in-order: open breaker → 503 before anything else runs. */
  breaker(): void {
    if (this.core.breaker.allow()) {
      this.#record({ check: 'breaker', outcome: 'allowed' });
      return;
    }
    this.#deny(
      new CheckDenial(
        { check: 'breaker', outcome: 'denied', code: 'BILLING_SERVICE_ERROR' },
        new BillingError('BILLING_SERVICE_ERROR', { metadata: { reason: 'circuit_open' } }),
      ),
    );
  }

  /** docs/behaviour.md#balance (balance mode only). */
  balance(): void | Promise<void> {
    if (this.subject.mode !== 'balance') return this.#skip('balance', 'subscription_mode');
    const { userId } = this.subject;
    return this.#withBatch((batch) =>
      this.#breakerWatchedRead(
        { kind: 'balance', userId },
        batch?.balance,
        () => this.core.store.getBalance(userId),
        'BILLING_SUBJECT_NOT_FOUND',
        (entity, source) => {
          if (this.estimate !== undefined) this.#plan.push(balanceDimension(userId, entity));
          this.#apply(this.#decidedEarlier(entity) ?? decideBalance(entity.balance, this.core.options.minimumBalanceReserve, source));
        },
      ),
    );
  }

  /** docs/behaviour.md#subscription (subscription mode only). */
  subscription(): void | Promise<void> {
    const { mode, userId, groupId } = this.subject;
    if (mode !== 'subscription' || groupId === null) return this.#skip('subscription', 'balance_mode');
    return this.#withBatch((batch) =>
      this.#breakerWatchedRead(
        { kind: 'subscription', userId, groupId },
        batch?.subscription,
        () => this.core.store.getActiveSubscription(userId, groupId, this.time),
        'SUBSCRIPTION_INVALID',
        (entity, source) => {
          if (this.estimate !== undefined) this.#plan.push(...subscriptionDimensions(userId, groupId, entity, this.subject.groupLimits, this.time));
          this.#apply(this.#decidedEarlier(entity) ?? decideSubscription(entity, this.subject.groupLimits, this.time, source));
        },
      ),
    );
  }

  /**
   * The two reads that report to the breaker (docs/behaviour.md#circuit-breaker): cache first, else the store, then `decide`
   * on the entity. A store failure is an outage (503, breaker failure). Any answer of the store is
   * a breaker success, an empty one included: an unknown user, or a subscription expired or
   * revoked since authentication, is a denial with `notFound`, not an outage (docs/behaviour.md#balance, docs/behaviour.md#subscription).
   */
  #breakerWatchedRead<K extends 'balance' | 'subscription'>(
    ref: CacheEntityRef & { kind: K },
    read: CacheRead<CacheEntityMap[K]> | undefined,
    load: () => Promise<CacheEntityMap[K] | null>,
    notFound: 'BILLING_SUBJECT_NOT_FOUND' | 'SUBSCRIPTION_INVALID',
    decide: (entity: CacheEntityMap[K], source: 'cache' | 'store') => void,
  ): void | Promise<void> {
    const check = ref.kind;
    if (read?.hit) {
      this.core.breaker.recordSuccess();
      return decide(read.value, 'cache');
    }
    // The breaker hears from the shared load itself, once, not from each request that waited on it.
    const reported = (signal: AbortSignal) => reportedToBreaker(this.core.breaker, signal, load());
    return this.#loadAndFill<K, CacheEntityMap[K] | null>(ref, read, reported, (loaded) => loaded).then(
      (entity) => {
        if (entity !== null) return decide(entity, 'store');
        this.#deny(new CheckDenial({ check, outcome: 'denied', code: notFound, source: 'store' }, new BillingError(notFound)));
      },
      (err: unknown) => this.#infrastructureFailure(check, err),
    );
  }

  /** docs/behaviour.md#platform-quota (balance mode, platform given). Fails open. */
  platformQuota(): void | Promise<void> {
    const { mode, userId, platform } = this.subject;
    if (mode !== 'balance') return this.#skip('platformQuota', 'subscription_mode');
    if (platform === null) return this.#skip('platformQuota', 'no_platform');
    return this.#withBatch((batch) => {
      const read = batch?.platformQuota;
      if (read?.hit) return this.#quotaDecision(userId, platform, read.value, 'cache');
      return this.#platformQuotaFromStore(userId, platform, read);
    });
  }

  /** The quota row (or its absence) from the store, shared by concurrent requests, cached as a sentinel when absent. */
  async #platformQuotaFromStore(userId: string, platform: string, read: CacheRead<PlatformQuotaEntity> | undefined): Promise<void> {
    let row: PlatformQuotaEntity | null;
    try {
      // No row is cached as a sentinel, so users without a quota do not reach the store every time (docs/behaviour.md#platform-quota).
      row = await this.#loadAndFill(
        { kind: 'platformQuota', userId, platform },
        read,
        () => this.core.store.getPlatformQuota(userId, platform),
        (loaded) => loaded ?? platformQuotaSentinel(this.time),
        this.signal(),
      );
    } catch (err) {
      if (err instanceof Error && err.name === 'AbortError') {
        // The client is gone; letting it through costs nothing (docs/behaviour.md#platform-quota).
        return this.#record({ check: 'platformQuota', outcome: 'allowed', reason: 'cancelled', source: 'none' });
      }
      return this.#failOpen('platformQuota', err);
    }
    if (row === null) return this.#record({ check: 'platformQuota', outcome: 'allowed', reason: 'no_quota', source: 'store' });
    this.#quotaDecision(userId, platform, row, 'store');
  }

  #quotaDecision(userId: string, platform: string, entity: PlatformQuotaEntity, source: CheckEvaluation['source']): void {
    if (this.estimate !== undefined && !entity.sentinel) this.#plan.push(...platformQuotaDimensions(userId, platform, entity, this.time));
    this.#apply(this.#decidedEarlier(entity) ?? decidePlatformQuota(entity, this.time, source));
  }

  /** docs/behaviour.md#api-key-windows (both modes, keys with a limit). Fails open. */
  apiKeyWindows(): void | Promise<void> {
    const { userId, apiKeyId, apiKeyLimits } = this.subject;
    if (apiKeyId === null || apiKeyLimits === null) return this.#skip('apiKeyWindows', 'no_key_limits');
    const decide = (entity: ApiKeyWindowsEntity, source: 'cache' | 'store'): void => {
      if (apiKeyWindowsNeedReset(entity, this.time)) this.#resetKeyWindows(userId, apiKeyId);
      if (this.estimate !== undefined) this.#plan.push(...apiKeyDimensions(userId, apiKeyId, entity, apiKeyLimits, this.time));
      this.#apply(this.#decidedEarlier(entity) ?? decideApiKeyWindows(entity, apiKeyLimits, this.time, source));
    };
    return this.#withBatch((batch) => {
      const read = batch?.apiKeyWindows;
      if (read?.hit) return decide(read.value, 'cache');
      const ref = { kind: 'apiKeyWindows', userId, apiKeyId } as const;
      return this.#loadAndFill(
        ref,
        read,
        () => this.core.store.getApiKeyWindows(userId, apiKeyId),
        (loaded) => loaded,
      ).then(
        (entity) => decide(entity, 'store'),
        (err: unknown) => this.#failOpen('apiKeyWindows', err),
      );
    });
  }

  /**
   * The request's holds, taken in one atomic cache step (docs/holds.md): its estimate against every
   * limit the checks saw, all or nothing, together with a concurrency slot per capped user and API
   * key. With neither an estimate nor a cap it does nothing. When the cache fails, the estimate is
   * held in the store instead; slots then fail open (only the cache counts them across processes).
   */
  reserve(): void | Promise<void> {
    if (this.#holdsTaken) return;
    this.#holdsTaken = true;
    const estimate = this.estimate;
    const slots = this.#slotPlan();
    if (estimate === undefined && slots.length === 0) return;
    const cache = this.core.cache;
    if (!cache) {
      if (estimate !== undefined) this.#skip('reservation', 'no_cache');
      if (slots.length > 0) this.#skip('concurrency', 'no_cache');
      return;
    }
    let money = false;
    if (estimate === 0n) this.#skip('reservation', 'zero_estimate');
    else if (estimate !== undefined && this.#plan.length === 0) this.#skip('reservation', 'no_limits');
    else money = estimate !== undefined;
    if (!money && slots.length === 0) return;
    const amount = money ? estimate! : 0n;
    // The whole chain without shadowed checks counts RPM (last) in the same round trip as the holds.
    if (this.#shadowChecks?.size !== 0) return this.#reserve(cache, amount, money, slots, null);
    return this.#withRpmRequest((rpm) => this.#reserve(cache, amount, money, slots, rpm));
  }

  /** A slot per capped user and key, named like the other dimensions of the user's lease book. */
  #slotPlan(): PlannedSlot[] {
    const { userMaxConcurrency, apiKeyId, apiKeyMaxConcurrency } = this.subject;
    const slots: PlannedSlot[] = [];
    if (userMaxConcurrency > 0) slots.push({ scope: 'user', slot: { name: 'cc:user', limit: userMaxConcurrency } });
    if (apiKeyId !== null && apiKeyMaxConcurrency > 0) slots.push({ scope: 'apiKey', slot: { name: `cc:key:${apiKeyId}`, limit: apiKeyMaxConcurrency } });
    return slots;
  }

  async #reserve(cache: BillingCache, amount: bigint, money: boolean, slots: PlannedSlot[], rpm: RpmRequest | null): Promise<void> {
    // By hand (reserveEstimate / concurrencyLimit) one shadow flag covers the step; the whole chain
    // shadows the reservation and the concurrency check each by its own name.
    const shadowMoney = this.#shadow;
    const shadowSlots = this.#shadowChecks ? this.#shadowChecks.has('concurrency') : this.#shadow;
    const dimensions = money ? this.#plan.map((planned) => planned.dimension) : [];
    const unenforced = new Set<string>([...(shadowMoney ? dimensions.map((d) => d.name) : []), ...(shadowSlots ? slots.map((s) => s.slot.name) : [])]);
    const request: ReserveRequest = {
      userId: this.subject.userId,
      leaseId: randomUUID(),
      amount,
      ttlMs: this.core.options.reservationTtlMs,
      dimensions,
      slots: slots.map((s) => s.slot),
      unenforced: unenforced.size > 0 ? unenforced : undefined,
      rpm: rpm ?? undefined,
    };
    let result: ReserveResult;
    let source: 'cache' | 'store' = 'cache';
    let leaseId = request.leaseId;
    let heldSlots = slots;
    try {
      result = await cache.reserve(request);
    } catch (err) {
      // The script may have counted RPM although its answer never came: RPM fails open rather than count twice.
      if (rpm) this.#countFailure = err;
      if (slots.length > 0) this.#failOpen('concurrency', err);
      heldSlots = [];
      // A Redis outage costs speed, never money: the hold goes to the store instead (docs/holds.md).
      if (!money) return;
      if (!storeCanHold(this.core)) return this.#failOpen('reservation', err);
      this.core.warnings.warn(
        'reservation_cache_failed',
        { err: errorText(err) },
        'billing reservation could not be held in the cache; holding it in the store',
      );
      source = 'store';
      try {
        ({ leaseId, result } = await holdInStore(this.core, { ...request, slots: [], unenforced: undefined, rpm: undefined }));
        this.core.breaker.recordSuccess();
      } catch (storeErr) {
        this.core.breaker.recordFailure();
        return this.#infrastructureFailure('reservation', storeErr);
      }
    }
    if (result.outcome === 'denied') return this.#holdDenied(result.dimension, slots, source);
    // Only a replaceOnly request can find its lease gone or a row stale; a new one never asks for that.
    if (result.outcome === 'gone' || result.outcome === 'stale') {
      return this.#failOpen('reservation', new Error(`the cache answered ${result.outcome} to a new reservation`));
    }
    if (result.rpm !== undefined) this.#countedRpm = result.rpm;
    // The holds fit, RPM refused: nothing is held, and the RPM check renders the denial.
    if (result.outcome === 'rpm_exceeded') return;
    this.lease = { leaseId, amountUnits: amount, expiresAtMs: result.expiresAtMs, slots: heldSlots.length };
    this.#held = { request: { ...request, leaseId, rpm: undefined }, source, slots: heldSlots };
    this.core.openLeases.count++;
    this.core.openLeases.slots += heldSlots.length;
    this.core.renewer.track(this.subject.userId, leaseId);
    if (money) {
      const over = result.over !== undefined && dimensions.some((d) => d.name === result.over);
      this.#record({ check: 'reservation', outcome: over ? 'shadow_deny' : 'allowed', source, ...(over ? { reason: result.over } : {}) });
    }
    if (heldSlots.length > 0) {
      const inUse = result.slotsInUse ?? [];
      const windows: WindowEvaluation[] = heldSlots.map(({ scope, slot }, i) => ({
        window: scope,
        usd: false,
        limit: slot.limit,
        usage: inUse[i] ?? 0,
        resetsAtMs: null,
      }));
      const over = windows.some((w) => w.usage > (w.limit ?? Infinity));
      this.#record({ check: 'concurrency', outcome: over ? 'shadow_deny' : 'allowed', source: 'cache', windows });
    }
  }

  /** The denial a refused dimension or slot gives: the limit's own, or the concurrency cap's. */
  #holdDenial(dimension: string, slots: PlannedSlot[]): BillingError {
    const slot = slots.find((s) => s.slot.name === dimension);
    if (slot) {
      return new BillingError('CONCURRENCY_LIMIT_EXCEEDED', {
        retryAfter: CONCURRENCY_RETRY_AFTER_SEC,
        metadata: { scope: slot.scope, limit: slot.slot.limit },
      });
    }
    const planned = this.#plan.find((p) => p.dimension.name === dimension);
    return planned ? planned.denial(this.time) : new BillingError('INSUFFICIENT_BALANCE');
  }

  /** An enforced dimension or slot refused: nothing was held anywhere. */
  #holdDenied(dimension: string, slots: PlannedSlot[], source: 'cache' | 'store'): void {
    // Only an enforced part refuses, so this denial is never a shadow one, whatever the step's flag.
    this.#shadow = false;
    const error = this.#holdDenial(dimension, slots);
    const slot = slots.find((s) => s.slot.name === dimension);
    const record: CheckEvaluation = slot
      ? { check: 'concurrency', outcome: 'denied', code: error.code, source, reason: slot.scope }
      : { check: 'reservation', outcome: 'denied', code: error.code, source, reason: dimension };
    this.#deny(new CheckDenial(record, error));
  }

  /**
   * Grows the request's hold by `extraUnits` against every limit it was reserved on, all or
   * nothing, in one cache step (the reserve script replacing the open lease, so in constant time).
   * Never throws: the outcome says whether the hold grew. Settlement still replaces the whole hold
   * by the actual cost.
   */
  extendHold(extraUnits: bigint): Promise<HoldExtension> {
    const next = this.#extending.then(() => this.#extendOnce(extraUnits));
    this.#extending = next.catch(() => {});
    return next;
  }

  async #extendOnce(extraUnits: bigint): Promise<HoldExtension> {
    const metrics = this.core.metrics;
    const unavailable = (detail: HoldUnavailable): HoldExtension => {
      metrics.holdExtension?.('unavailable');
      return { extended: false, reason: 'unavailable', detail };
    };
    const lease = this.lease;
    const held = this.#held;
    const cache = this.core.cache;
    if (!lease || !held || !cache || lease.amountUnits === 0n) return unavailable('no_hold');
    if (this.#leaseHandedOver) return unavailable('ended');
    if (held.source === 'store') return unavailable('store_hold');
    const amount = lease.amountUnits + extraUnits;
    if (amount > MAX_USD_UNITS) throw new MoneyError(`amountUsd would make the hold larger than ${formatUsd(MAX_USD_UNITS)} USD`, 'amountUsd');
    let result: ReserveResult;
    try {
      result = await cache.reserve({ ...held.request, amount, ttlMs: this.core.options.reservationTtlMs, replaceOnly: true });
    } catch (err) {
      this.core.warnings.warn('hold_extension_failed', { err: errorText(err) }, 'billing hold could not be extended: the cache failed');
      return unavailable('cache_error');
    }
    if (result.outcome === 'gone' || result.outcome === 'rpm_exceeded') return unavailable('ended');
    if (result.outcome === 'stale') return unavailable('stale');
    if (result.outcome === 'denied') {
      metrics.holdExtension?.('refused');
      return { extended: false, reason: 'refused', code: this.#holdDenial(result.dimension, held.slots).code, dimension: result.dimension };
    }
    // Settled or released while the script ran: the hold is the settlement's now, not this request's.
    if (this.#leaseHandedOver) return unavailable('ended');
    lease.amountUnits = amount;
    lease.expiresAtMs = result.expiresAtMs;
    metrics.holdExtension?.('extended');
    return { extended: true, heldUnits: amount };
  }

  /** Hands the lease to a settlement, which releases it once the cost is stored. */
  takeLease(): Lease | undefined {
    if (this.#leaseHandedOver) return undefined;
    this.#leaseHandedOver = true;
    if (this.lease) {
      this.core.openLeases.count--;
      this.core.openLeases.slots -= this.lease.slots;
    }
    return this.lease;
  }

  /** Releases the lease unless a settlement took it (denial, error, disconnect, response without settlement). */
  releaseLease(): void {
    const lease = this.takeLease();
    if (!lease) return;
    const { userId } = this.subject;
    this.core.background.run(`releaseLease:${userId}:${lease.leaseId}`, () => releaseLease(this.core, userId, lease.leaseId));
  }

  /** docs/behaviour.md#requests-per-minute, always last. Fails open; a no-op without a cache. */
  rpm(): void | Promise<void> {
    const cache = this.core.cache;
    if (!cache) return this.#skip('rpm', 'no_cache');
    return this.#withRpmRequest((request) => this.#rpmCount(cache, request));
  }

  /** `use` on the RPM hit this request makes (null: no cap applies), once the group override is known. */
  #withRpmRequest(use: (request: RpmRequest | null) => void | Promise<void>): void | Promise<void> {
    const { groupId } = this.subject;
    if (groupId === null) return use(this.#rpmRequest(null));
    const override = this.#rpmOverride(groupId);
    return typeof override === 'object' && override !== null ? override.then((found) => use(this.#rpmRequest(found))) : use(this.#rpmRequest(override));
  }

  #rpmCount(cache: BillingCache, request: RpmRequest | null): void | Promise<void> {
    if (request === null) return this.#skip('rpm', 'no_caps');
    if (this.#countFailure !== undefined) return this.#failOpen('rpm', this.#countFailure);
    // Counted with the batched read when the checks passed on exactly that data (runChain).
    if (this.#countedRpm !== undefined) return this.#rpmDecision(request, this.#countedRpm);
    return cache.rpmHit(request).then(
      (result) => this.#rpmDecision(request, result),
      (err: unknown) => this.#failOpen('rpm', err),
    );
  }

  #rpmDecision(request: RpmRequest, result: RpmResult): void {
    const windows: WindowEvaluation[] = [];
    if (request.group) windows.push({ window: 'group', usd: false, limit: request.group.cap, usage: result.groupCount, resetsAtMs: result.bucketEndsAtMs });
    if (request.userCap > 0) windows.push({ window: 'user', usd: false, limit: request.userCap, usage: result.userCount, resetsAtMs: result.bucketEndsAtMs });
    if (result.outcome === 'allowed') {
      this.#record({ check: 'rpm', outcome: 'allowed', source: 'cache', windows });
      return;
    }
    const code = result.outcome === 'group_exceeded' ? 'GROUP_RPM_EXCEEDED' : 'USER_RPM_EXCEEDED';
    this.#deny(
      new CheckDenial(
        { check: 'rpm', outcome: 'denied', code, source: 'cache', windows },
        new BillingError(code, { retryAfter: result.retryAfterSec, metadata: { windowResetsAt: new Date(result.bucketEndsAtMs).toISOString() } }),
      ),
    );
  }

  /** The counters this request hits, or null when no cap applies. An override replaces the group cap; 0 exempts the user from it. */
  #rpmRequest(override: RpmOverride): RpmRequest | null {
    const { userId, groupId, userRpmLimit, groupRpmLimit } = this.subject;
    const groupCap = groupId === null ? 0 : override === null ? groupRpmLimit : override;
    if (groupCap === 0 && userRpmLimit === 0) return null;
    return { userId, group: groupCap > 0 && groupId !== null ? { groupId, cap: groupCap } : undefined, userCap: userRpmLimit };
  }

  /**
   * The RPM hit to apply together with the read when every check would pass on `last` (the cache's
   * previous result for the same keys), decided by the same pure functions the checks use, on this
   * request's time. Null (count separately, after the checks) when any entity was a miss or any
   * check would deny.
   */
  #countIfPasses(last: CacheBatchResult): RpmRequest | null {
    const { balance, subscription, platformQuota, apiKeyWindows, rpmOverride } = last;
    const { groupId, groupLimits, apiKeyLimits } = this.subject;
    const time = this.time;
    const passes = (entity: object, result: CheckEvaluation | CheckDenial) => {
      (this.#decided ??= []).push(entity, result);
      return !(result instanceof CheckDenial);
    };
    if (balance && !(balance.hit && passes(balance.value, decideBalance(balance.value.balance, this.core.options.minimumBalanceReserve, 'cache')))) return null;
    if (subscription && !(subscription.hit && passes(subscription.value, decideSubscription(subscription.value, groupLimits, time, 'cache')))) return null;
    if (platformQuota && !(platformQuota.hit && passes(platformQuota.value, decidePlatformQuota(platformQuota.value, time, 'cache')))) return null;
    if (
      apiKeyWindows &&
      !(apiKeyWindows.hit && apiKeyLimits !== null && passes(apiKeyWindows.value, decideApiKeyWindows(apiKeyWindows.value, apiKeyLimits, time, 'cache')))
    )
      return null;
    let override: RpmOverride = null;
    if (groupId !== null) {
      const given = this.subject.groupRpmOverride;
      if (given !== undefined) override = given;
      else if (rpmOverride?.hit) override = rpmOverride.value.value;
      else return null;
    }
    return this.#rpmRequest(override);
  }

  /** What #countIfPasses decided on this very entity object (a cache hit the read confirmed), if anything. */
  #decidedEarlier(entity: object): CheckEvaluation | CheckDenial | undefined {
    const decided = this.#decided;
    if (decided === undefined) return undefined;
    for (let i = 0; i < decided.length; i += 2) if (decided[i] === entity) return decided[i + 1] as CheckEvaluation | CheckDenial;
    return undefined;
  }

  /** The user's per-group override: from the subject, else the cache, else the store (cached, "none" included). */
  #rpmOverride(groupId: string): RpmOverride | Promise<RpmOverride> {
    const given = this.subject.groupRpmOverride;
    if (given !== undefined) return given;
    const { userId } = this.subject;
    return this.#withBatch((batch) => {
      const read = batch?.rpmOverride;
      if (read?.hit) return read.value.value;
      // Version 0: overrides are never put, only invalidated by setRpmOverride; "none" is cached too.
      return this.#loadAndFill(
        { kind: 'rpmOverride', userId, groupId },
        read,
        () => this.core.store.getRpmOverride(userId, groupId),
        (value) => ({ version: 0, value }),
      ).catch((err: unknown) => {
        this.core.warnings.warn('rpm_override_lookup_failed', { err: errorText(err) }, 'RPM override lookup failed; treating as none');
        return null;
      });
    });
  }

  /** `use` on the batched read's result: at once when it has arrived, else once it does. */
  #withBatch<T>(use: (batch: CacheBatchResult | null) => T | Promise<T>): T | Promise<T> {
    const arrived = this.#batchValue;
    return arrived !== undefined ? use(arrived) : this.#readBatch().then(use);
  }

  /** One round trip for every entity this subject's checks may need, started by the first check that needs data. */
  #readBatch(): Promise<CacheBatchResult | null> {
    const cache = this.core.cache;
    if (!cache) {
      this.#batchValue = null;
      return Promise.resolve(null);
    }
    if (this.#batch) return this.#batch;
    const { userId, mode, groupId, apiKeyId, apiKeyLimits, platform, groupRpmOverride } = this.subject;
    const request: CacheBatchRequest = {
      userId,
      balance: mode === 'balance',
      subscriptionGroupId: mode === 'subscription' && groupId !== null ? groupId : undefined,
      apiKeyId: apiKeyLimits !== null && apiKeyId !== null ? apiKeyId : undefined,
      platform: mode === 'balance' && platform !== null ? platform : undefined,
      rpmOverrideGroupId: groupId !== null && groupRpmOverride === undefined ? groupId : undefined,
    };
    const { metrics } = this.core;
    let offered = false;
    const read =
      this.#wholeChain && cache.readBatchCounting
        ? cache
            .readBatchCounting(request, (last) => {
              const rpm = this.#countIfPasses(last);
              offered = rpm !== null;
              return rpm;
            })
            .then(
              ({ batch, rpm }) => {
                this.#countedRpm = rpm;
                return batch;
              },
              (err: unknown) => {
                // The script may have run and counted even though its answer never came (a timeout), so
                // RPM fails open instead of counting a second time (and waiting for Redis a second time).
                if (offered) this.#countFailure = err;
                throw err;
              },
            )
        : cache.readBatch(request);
    this.#batch = read.then(
      (result) => {
        countCacheReads(metrics, result);
        return (this.#batchValue = result);
      },
      (err: unknown) => {
        for (const [field, entity] of BATCH_ENTITIES) if (request[field]) metrics.cache(entity, 'error');
        this.core.warnings.warn('cache_read_failed', { err: errorText(err) }, 'billing cache read failed; reading the store');
        return (this.#batchValue = null);
      },
    );
    return this.#batch;
  }

  /**
   * One store load shared by every concurrent request for the entity (single-flight, detached from
   * any caller). Its leader fills the cache with what it read — only when this request's cache read
   * itself succeeded, with that read's generation, so an invalidation since then refuses the fill —
   * and holds the load's key until the fill has landed and a turn of the event loop has passed, so a
   * request that misses meanwhile joins this load rather than reading the store again.
   */
  #loadAndFill<K extends CacheEntityKind, T>(
    ref: CacheEntityRef & { kind: K },
    read: CacheRead<CacheEntityMap[K]> | undefined,
    load: (signal: AbortSignal) => Promise<T>,
    toCached: (loaded: T) => CacheEntityMap[K] | null,
    signal?: AbortSignal,
  ): Promise<T> {
    return this.core.loads.do(
      refKey(ref),
      async (loadSignal, hold) => {
        const loaded = await load(loadSignal);
        const value = toCached(loaded);
        if (value !== null && read && !read.hit) hold(this.core.cacheSync.fill(ref, value, read.generation).then(nextTurn));
        return loaded;
      },
      signal,
    ) as Promise<T>;
  }

  #resetKeyWindows(userId: string, apiKeyId: string): void {
    const { store, cacheSync } = this.core;
    const time = this.time;
    this.core.background.run(`resetKeyWindows:${userId}:${apiKeyId}`, async () => {
      await store.resetExpiredApiKeyWindows(userId, apiKeyId, time);
      await cacheSync.invalidate({ kind: 'apiKeyWindows', userId, apiKeyId });
      // The key stays taken while requests that read the windows before the invalidation landed reach this check.
      await nextTurn();
    });
  }

  /** The store could not answer: 503. The breaker has already counted the failed load (see reportedToBreaker). */
  #infrastructureFailure(check: CheckName, err: unknown): void {
    this.core.warnings.warn(`${check}_store_failed`, { check, err: errorText(err) }, 'billing store read failed');
    this.#deny(
      new CheckDenial({ check, outcome: 'denied', code: 'BILLING_SERVICE_ERROR', source: 'store' }, new BillingError('BILLING_SERVICE_ERROR', { cause: err })),
    );
  }

  #failOpen(check: CheckName, err: unknown): void {
    this.core.warnings.warn(`${check}_failed_open`, { check, err: errorText(err) }, 'billing check failed open');
    this.#record({ check, outcome: 'failed_open', reason: 'error', source: 'none' });
  }

  #skip(check: CheckName, reason: string): void {
    this.#record({ check, outcome: 'skipped', reason });
  }

  #record(record: CheckEvaluation): void {
    this.decision.evaluations.push(record);
    this.core.metrics.decision(record.check, record.outcome);
  }

  #apply(result: CheckEvaluation | CheckDenial): void {
    if (result instanceof CheckDenial) this.#deny(result);
    else this.#record(result);
  }

  /** Throws the denial, or, for a check in shadow mode, records and logs it and lets the request go on. */
  #deny(denial: CheckDenial): void {
    if (this.#shadow) {
      this.#record({ ...denial.record, outcome: 'shadow_deny' });
      this.core.warnings.warn(
        `${denial.record.check}_shadow_deny`,
        { check: denial.record.check, code: denial.error.code },
        'billing check would deny (shadow mode)',
      );
      return;
    }
    // A later check (RPM) denying after the reservation: the estimate must not stay held.
    this.releaseLease();
    this.#record(denial.record);
    this.decision.allowed = false;
    denials.add(denial.error);
    throw denial.error;
  }
}

/**
 * `work` (one store load), reported to the breaker exactly once (docs/faults.md, "Circuit breaker"):
 * success or failure as it settles, or a failure when the load's signal fires first (it timed out;
 * a late answer then changes nothing).
 */
function reportedToBreaker<T>(breaker: CircuitBreaker, signal: AbortSignal, work: Promise<T>): Promise<T> {
  let reported = false;
  const report = (ok: boolean): void => {
    if (reported) return;
    reported = true;
    signal.removeEventListener('abort', onAbort);
    if (ok) breaker.recordSuccess();
    else breaker.recordFailure();
  };
  const onAbort = (): void => report(false);
  signal.addEventListener('abort', onAbort, { once: true });
  return work.then(
    (value) => {
      report(true);
      return value;
    },
    (err: unknown) => {
      report(false);
      throw err;
    },
  );
}

// Shared shapes: the subject, the versioned entities, and the store and cache interfaces.
import type { Usd } from './money.js';

export type { Usd } from './money.js';

/** An entity id as the public API accepts it; normalised to a string internally. */
export type BillingId = string | number;

/** `{ now(): number }` in epoch milliseconds; one clock for everything computed in the process. */
export interface Clock {
  now(): number;
}

/** Pino-compatible logger subset; the default is silent. */
export interface BillingLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Who is asking, as resolved by the application's own authentication (docs/architecture.md). */
export interface BillingSubject {
  user: {
    id: BillingId;
    rpmLimit?: number;
    groupRpmOverride?: number | null;
    /** Most requests of this user in flight at once, across every process sharing the cache; null or 0 = unlimited. */
    maxConcurrency?: number | null;
  };
  apiKey?: {
    id: BillingId;
    rateLimit5h?: Usd;
    rateLimit1d?: Usd;
    rateLimit7d?: Usd;
    /** Most requests with this key in flight at once; null or 0 = unlimited. */
    maxConcurrency?: number | null;
  } | null;
  group?: {
    id: BillingId;
    billingType: 'standard' | 'subscription';
    dailyLimitUsd?: Usd | null;
    weeklyLimitUsd?: Usd | null;
    monthlyLimitUsd?: Usd | null;
    rpmLimit?: number;
  } | null;
  subscription?: { id: BillingId } | null;
  platform?: string | null;
}

export type BillingMode = 'balance' | 'subscription';

/** "now" plus the configured zone: everything a window computation needs. */
export interface TimeContext {
  nowMs: number;
  timezone: string;
}

// ---------------------------------------------------------------------------------------------
// Versioned entities. Amounts are bigint units of 1e-8 USD (lib/money.ts); times epoch ms.
// `version` is the store row's counter, bumped by every write (docs/behaviour.md#cache-consistency).

export interface BalanceEntity {
  version: number;
  balance: bigint;
  /**
   * Units held on this row by reservations made in the store while the cache was unreachable
   * (docs/holds.md); present only when not zero.
   */
  held?: bigint;
}

export type SubscriptionStatus = 'active' | 'expired' | 'revoked' | 'suspended';

export interface SubscriptionEntity {
  version: number;
  subscriptionId: string;
  status: SubscriptionStatus;
  /** When the term began; with expiresAtMs it tells a one-time daily card (lib/windows.ts). */
  startsAtMs: number;
  expiresAtMs: number;
  dailyUsage: bigint;
  weeklyUsage: bigint;
  monthlyUsage: bigint;
  dailyStartMs: number | null;
  weeklyStartMs: number | null;
  monthlyStartMs: number | null;
  /**
   * Units held on this row by reservations made in the store while the cache was unreachable
   * (docs/holds.md); present only when not zero.
   */
  held?: bigint;
}

export interface ApiKeyWindowsEntity {
  /** 0 when the key has no row yet (never used). */
  version: number;
  usage5h: bigint;
  usage1d: bigint;
  usage7d: bigint;
  start5hMs: number | null;
  start1dMs: number | null;
  start7dMs: number | null;
  /**
   * Units held on this row by reservations made in the store while the cache was unreachable
   * (docs/holds.md); present only when not zero.
   */
  held?: bigint;
}

/** Platform-quota limits: null = unlimited, 0 = fully blocked, > 0 = cap (docs/behaviour.md#platform-quota). */
export interface PlatformQuotaEntity {
  version: number;
  /** A cached "no quota row" marker: all limits null, short TTL (docs/behaviour.md#platform-quota). */
  sentinel: boolean;
  dailyLimit: bigint | null;
  weeklyLimit: bigint | null;
  monthlyLimit: bigint | null;
  dailyUsage: bigint;
  weeklyUsage: bigint;
  monthlyUsage: bigint;
  dailyStartMs: number | null;
  weeklyStartMs: number | null;
  monthlyStartMs: number | null;
  /**
   * Units held on this row by reservations made in the store while the cache was unreachable
   * (docs/holds.md); present only when not zero.
   */
  held?: bigint;
}

/** A user's per-group RPM override: a number, or null = known to have none. */
export type RpmOverride = number | null;

// ---------------------------------------------------------------------------------------------
// The store (source of truth).

export interface SettlementInput {
  requestId: string;
  /** '' when the request had no API key. Dedup is on (requestId, apiKeyId). */
  apiKeyId: string;
  userId: string;
  groupId: string | null;
  mode: BillingMode;
  costUnits: bigint;
  platform: string | null;
  /** Whether the key has at least one spend limit, i.e. its windows are tracked. */
  trackKeyWindows: boolean;
  /** false in runMode 'simple': write the usage log only, charge nothing. Default true. */
  charge?: boolean;
  model?: string | null;
  inputTokens?: number | null;
  outputTokens?: number | null;
  time: TimeContext;
}

/** One settlement's outcome in a batch: its result, or the error it alone gets. */
export type SettleOutcome = { ok: true; result: SettlementResult } | { ok: false; error: Error };

export interface SettlementResult {
  /** True when this requestId was already settled with the same content (no-op). */
  duplicate: boolean;
  requestId: string;
  costUnits: bigint;
  /** New row values, present when the settlement wrote them (never on a duplicate). */
  balance?: BalanceEntity;
  subscription?: SubscriptionEntity;
  apiKeyWindows?: ApiKeyWindowsEntity;
  platformQuota?: PlatformQuotaEntity;
}

export interface UsageLogRow {
  requestId: string;
  apiKeyId: string;
  userId: string;
  groupId: string | null;
  mode: BillingMode;
  costUnits: bigint;
  platform: string | null;
  model: string | null;
  inputTokens: number | null;
  outputTokens: number | null;
  createdAtMs: number;
}

export interface SubscriptionInput {
  userId: string;
  groupId: string;
  status?: SubscriptionStatus;
  startsAtMs?: number;
  expiresAtMs: number;
}

export interface PlatformQuotaLimits {
  dailyLimit?: bigint | null;
  weeklyLimit?: bigint | null;
  monthlyLimit?: bigint | null;
}

export interface BillingStore {
  /** null when the user has no account. */
  getBalance(userId: string): Promise<BalanceEntity | null>;
  /** The subscription row for (user, group) if its status is active and it has not expired. */
  getActiveSubscription(userId: string, groupId: string, time: TimeContext): Promise<SubscriptionEntity | null>;
  /** Never null: a key without a row reads as version 0, zero usage, null starts. */
  getApiKeyWindows(userId: string, apiKeyId: string): Promise<ApiKeyWindowsEntity>;
  getPlatformQuota(userId: string, platform: string): Promise<PlatformQuotaEntity | null>;
  getRpmOverride(userId: string, groupId: string): Promise<RpmOverride>;
  /** Restarts windows that are expired AND were started (non-null start); returns the new row. */
  resetExpiredApiKeyWindows(userId: string, apiKeyId: string, time: TimeContext): Promise<ApiKeyWindowsEntity>;
  /** docs/behaviour.md#settlement in one transaction; throws SettlementConflictError on same id, different content. */
  settle(input: SettlementInput): Promise<SettlementResult>;
  /**
   * Optional group commit (docs/group-commit.md): many settlements in one transaction, each with the
   * outcome settle() would have given it run alone in this order. Every touched row's new value is
   * in the result of the last settlement that changed it, and only there.
   */
  settleBatch?(inputs: readonly SettlementInput[]): Promise<SettleOutcome[]>;
  listUsage(userId: string, limit: number): Promise<UsageLogRow[]>;

  // Administration writes; each bumps the row version and returns the new row.
  topUp(userId: string, amount: bigint): Promise<BalanceEntity>;
  setBalance(userId: string, amount: bigint): Promise<BalanceEntity>;
  upsertSubscription(input: SubscriptionInput): Promise<SubscriptionEntity>;
  setPlatformQuota(userId: string, platform: string, limits: PlatformQuotaLimits): Promise<PlatformQuotaEntity>;
  setRpmOverride(userId: string, groupId: string, value: RpmOverride): Promise<RpmOverride>;
  /** Administrative reset: every window of the key back to zero usage and null start. */
  resetApiKeyWindows(userId: string, apiKeyId: string): Promise<ApiKeyWindowsEntity>;

  /** Cheap reachability probe for health checks. */
  ping(): Promise<void>;

  // Store holds (docs/holds.md): where a reservation goes when the cache cannot take it. Optional:
  // a store without them leaves admission to the checks alone while the cache is unreachable.
  /** Same rule as the cache's reserve, all or nothing, atomically in one transaction. */
  holdInStore?(request: StoreHoldRequest): Promise<StoreHoldResult>;
  /** Takes the hold back; null when it is unknown (released, expired and swept, or never made). */
  releaseStoreHold?(userId: string, holdId: string): Promise<EntityWrite[] | null>;
  /** Takes back every hold expired at `nowMs`, reading `limit` per page; the rows they were on, as now written. */
  releaseExpiredStoreHolds?(nowMs: number, limit: number): Promise<EntityWrite[]>;
  /**
   * Extends the holds still there to expire at `expiresAtMs` (never earlier than they would); the ids
   * that are not there any more (released, or expired and swept).
   */
  renewStoreHolds?(holdIds: readonly string[], expiresAtMs: number): Promise<string[]>;
}

/** A reservation to hold in the store, at the caller's time. */
export interface StoreHoldRequest extends ReserveRequest {
  nowMs: number;
}

/** A row a store write changed, as the cache should now have it. */
export type EntityWrite = { [K in Exclude<CacheEntityKind, 'rpmOverride'>]: { ref: CacheEntityRef & { kind: K }; value: CacheEntityMap[K] } }[Exclude<
  CacheEntityKind,
  'rpmOverride'
>];

export type StoreHoldResult =
  | { outcome: 'reserved'; expiresAtMs: number; writes: EntityWrite[] }
  | { outcome: 'denied'; dimension: string; availableUnits: bigint };

// ---------------------------------------------------------------------------------------------
// The cache (shared hot copy and counters).

export type CacheEntityKind = 'balance' | 'subscription' | 'apiKeyWindows' | 'platformQuota' | 'rpmOverride';

/** Identifies one cached entity. All of a request's keys share the user's hash tag. */
export type CacheEntityRef =
  | { kind: 'balance'; userId: string }
  | { kind: 'subscription'; userId: string; groupId: string }
  | { kind: 'apiKeyWindows'; userId: string; apiKeyId: string }
  | { kind: 'platformQuota'; userId: string; platform: string }
  | { kind: 'rpmOverride'; userId: string; groupId: string };

export interface CacheEntityMap {
  balance: BalanceEntity;
  subscription: SubscriptionEntity;
  apiKeyWindows: ApiKeyWindowsEntity;
  platformQuota: PlatformQuotaEntity;
  rpmOverride: { version: number; value: RpmOverride };
}

/**
 * A read result. On a miss, `generation` must be handed back to `fill` so that a fill whose store
 * read began before an invalidation is refused (docs/behaviour.md#cache-consistency).
 */
export type CacheRead<T> = { hit: true; value: T } | { hit: false; generation: number };

/** Which entities one request needs; absent fields are not read. */
export interface CacheBatchRequest {
  userId: string;
  balance?: boolean;
  subscriptionGroupId?: string;
  apiKeyId?: string;
  platform?: string;
  rpmOverrideGroupId?: string;
}

export interface CacheBatchResult {
  balance?: CacheRead<BalanceEntity>;
  subscription?: CacheRead<SubscriptionEntity>;
  apiKeyWindows?: CacheRead<ApiKeyWindowsEntity>;
  platformQuota?: CacheRead<PlatformQuotaEntity>;
  rpmOverride?: CacheRead<{ version: number; value: RpmOverride }>;
}

export interface RpmRequest {
  userId: string;
  /** Present when a group counter applies: the per-user-in-group cap (> 0). */
  group?: { groupId: string; cap: number };
  /** User cap (> 0), or 0 when the user has none. */
  userCap: number;
}

export interface RpmResult {
  outcome: 'allowed' | 'group_exceeded' | 'user_exceeded';
  /** Counts after this request (0 when that counter was not touched). */
  groupCount: number;
  userCount: number;
  /** End of the current minute bucket on the cache's clock, epoch ms. */
  bucketEndsAtMs: number;
  /** Whole seconds to the end of the bucket, ≥ 1, from the cache's clock. */
  retryAfterSec: number;
}

export interface BillingCache extends ReservationCache {
  /** One round trip for everything a request needs. */
  readBatch(request: CacheBatchRequest): Promise<CacheBatchResult>;
  /**
   * Cache fill after a miss: applied only if the entity's generation still equals `generation`
   * (no invalidation since the read) and the value's version is newer than any cached one.
   * Resolves to whether it was applied.
   */
  fill<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K], generation: number): Promise<boolean>;
  /**
   * Write from a settlement or an admin write: applied iff the version is newer than the cached
   * one (a tombstone remembers the last version it replaced). Resolves to whether it was applied.
   */
  put<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K]): Promise<boolean>;
  /** Drops the value, bumps the generation, keeps the last version as a tombstone. */
  invalidate(ref: CacheEntityRef): Promise<void>;
  /** The RPM script: docs/behaviour.md#requests-per-minute in one round trip on the cache's clock. */
  rpmHit(request: RpmRequest): Promise<RpmResult>;
  /**
   * Optional: the batched read and the RPM hit in one round trip. `countIf` is called synchronously
   * with the result this cache last returned for the same keys, when it keeps one; if it returns an
   * RPM request (the caller's checks all pass on that result), the hit is applied atomically with
   * the read, and only if the stored entries are still exactly that result. `rpm` is the hit's
   * result, or undefined when nothing was counted (no earlier result, `countIf` declined, or the
   * data changed): the caller then checks the returned batch and calls rpmHit itself.
   */
  readBatchCounting?(request: CacheBatchRequest, countIf: (last: CacheBatchResult) => RpmRequest | null): Promise<{ batch: CacheBatchResult; rpm?: RpmResult }>;
  /** Cheap reachability probe for health checks. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Reservations (leases): an estimated cost held against every limit until settled or released.

/** A spend window a reservation counts against, named as in the cache's entity fields. */
export type ReservationWindow = 'daily' | 'weekly' | 'monthly' | '5h' | '1d' | '7d';

/**
 * One limit a reservation must fit under. Capacity and usage are read from the live cached entity
 * inside the cache's atomic step (so a settlement landing meanwhile is seen); the fallbacks apply
 * when the entity is not cached (it was just read from the store).
 */
export type ReservationDimension =
  | { name: string; kind: 'balance'; entity: { kind: 'balance'; userId: string }; fallbackCapacity: bigint }
  | {
      name: string;
      kind: 'window';
      entity: Extract<CacheEntityRef, { kind: 'subscription' | 'platformQuota' | 'apiKeyWindows' }>;
      window: ReservationWindow;
      /** The window is expired iff its start is null or < this (lib/windows.ts expiryThreshold). */
      expiryThreshold: number;
      limit: bigint;
      /** Effective usage the caller saw, used when the entity is not cached. */
      fallbackUsed: bigint;
    };

/**
 * A concurrency slot a reservation takes: one of at most `limit` requests in flight under this name
 * (per user, per API key). Slots are counted in the same atomic step as the money dimensions.
 */
export interface SlotDimension {
  name: string;
  /** At most this many leases may hold the slot at once (≥ 1). */
  limit: number;
}

export interface ReserveRequest {
  userId: string;
  leaseId: string;
  /** Units held on every money dimension; 0n only when there are none (a request that takes slots alone). */
  amount: bigint;
  ttlMs: number;
  dimensions: ReservationDimension[];
  /** Concurrency slots taken together with the amount, all or nothing. Default none. */
  slots?: SlotDimension[];
  /**
   * Names of dimensions and slots that are counted but never refuse (shadow mode): the reply names
   * the first of them that would have refused (`over`).
   */
  unenforced?: ReadonlySet<string>;
  /**
   * The request's RPM hit, counted in the same atomic step once the holds fit (RPM runs last: a
   * request the holds refuse is not counted, and one RPM refuses holds nothing).
   */
  rpm?: RpmRequest;
  /**
   * Replace an open lease only (growing a hold, docs/stream-metering.md): when no lease with this id
   * is open — never taken, released, settled or expired — nothing is held and the outcome is `gone`.
   * The lease keeps its slots; an enforced dimension must be read from its cached row (`stale`
   * otherwise), as the fallbacks date from the admission.
   */
  replaceOnly?: boolean;
}

export type ReserveResult =
  | {
      outcome: 'reserved';
      expiresAtMs: number;
      /** Leases holding each slot of the request, this one included, in the request's order. */
      slotsInUse?: number[];
      /** The first unenforced dimension or slot that would have refused, if any. */
      over?: string;
      /** The RPM hit, when the request asked for one. */
      rpm?: RpmResult;
    }
  | { outcome: 'denied'; dimension: string; availableUnits: bigint }
  /** The holds fit but the RPM hit refused: nothing is held. */
  | { outcome: 'rpm_exceeded'; rpm: RpmResult }
  /** A replaceOnly request found no open lease to replace: nothing is held. */
  | { outcome: 'gone' }
  /** A replaceOnly request met an enforced dimension whose row is not cached (its fallbacks are stale): nothing changed. */
  | { outcome: 'stale'; dimension: string };

export interface LeaseInfo {
  leaseId: string;
  amount: bigint;
  expiresAtMs: number;
  dimensions: string[];
  /** Concurrency slots the lease holds. */
  slots: string[];
}

/**
 * Implemented by caches that can hold reservations (both built-in caches do). Every operation costs
 * the same however many leases are open (docs/holds.md, "Constant time").
 */
export interface ReservationCache {
  /** All or nothing, atomically: fits under every dimension counting open leases, or nothing is held. */
  reserve(request: ReserveRequest): Promise<ReserveResult>;
  /** Drops the lease; resolves to whether it was still open (unknown, expired or released: false, and nothing changes). */
  release(userId: string, leaseId: string): Promise<boolean>;
  /**
   * Extends the user's open leases to live `ttlMs` from now (never shortens one); resolves to the ids
   * that could not be renewed because they are no longer open (released or expired: never revived).
   */
  renew(userId: string, leaseIds: readonly string[], ttlMs: number): Promise<string[]>;
  /** The user's open (unexpired) leases, on the cache's clock. */
  listLeases(userId: string): Promise<LeaseInfo[]>;
}

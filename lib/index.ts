// Public surface of koa-billing-eligibility (Koa-free): the core, backends, errors, money and types.
export {
  createBillingCore,
  BillingCore,
  type CheckResult,
  type CheckOptions,
  type ReservationHandle,
  type UsageEntry,
  type ApiKeyWindowsView,
} from './billing-core.js';
export type { BillingCoreOptions, ResolvedCoreOptions } from './core-options.js';
export type { BillingDecision, HoldUnavailable } from './billing-request.js';
export type { HoldExtensionResult } from './hold-extension.js';
export type { CheckEvaluation, CheckName, CheckOutcome, CheckRecord, WindowEvaluation, WindowReport } from './decisions.js';
export type { SettleRequest, SettlementReceipt } from './settlement.js';
export type { BillingAdmin, UpsertSubscriptionInput, PlatformQuotaInput, SubscriptionView } from './admin.js';
export { BillingError, BILLING_ERROR_CATALOGUE, type BillingErrorCode, type BillingErrorInfo, type BillingErrorOptions } from './errors.js';
export { renderBillingError, renderUnknownError, type ErrorFormat, type RenderedError } from './render.js';
export { BillingConfigError } from './options.js';
export { BillingValidationError } from './validate.js';
export { MoneyError, parseUsd, parseCostUsd, parseLimitUsd, formatUsd, multiplyUsd, MAX_USD_UNITS, type Usd } from './money.js';
export { systemClock, ManualClock } from './clock.js';
export { ThrottledLog } from './log.js';
export type { CircuitBreakerOptions, BreakerState } from './breaker.js';
export type { WriteQueueOptions } from './write-queue.js';
export type { SettlementBatchingOptions } from './group-commit.js';
export {
  BillingMetrics,
  noopMetrics,
  type BillingMetricsOptions,
  type BillingMetricsRecorder,
  type BillingGaugeSources,
  type CacheResultLabel,
  type DecisionOutcomeLabel,
  type SettlementResultLabel,
  type HoldExtensionLabel,
} from './metrics.js';
export { buildRateLimitHeaders, type RateLimitFamilies, type RateLimitHeaderFields } from './ratelimit-headers.js';
export { KnexBillingStore, type KnexBillingStoreOptions } from './store/knex-store.js';
export { migrateBillingSchema } from './store/migrations.js';
export { BillingStoreError, SettlementConflictError, SettlementTargetMissingError, StoreDataError, type BillingStoreErrorCode } from './store/store-errors.js';
export { RedisBillingCache, ReserveDeadlineError, type RedisBillingCacheOptions } from './cache/redis-cache.js';
export { recommendedRedisOptions, recommendedClusterOptions } from './cache/redis-client-options.js';
export { MemoryBillingCache, type MemoryBillingCacheOptions } from './cache/memory-cache.js';
export type { CacheKeys } from './cache/keys.js';
export type {
  BillingSubject,
  BillingId,
  BillingMode,
  BillingLogger,
  Clock,
  BillingStore,
  BillingCache,
  BalanceEntity,
  SubscriptionEntity,
  ApiKeyWindowsEntity,
  PlatformQuotaEntity,
  ReservationCache,
  ReserveRequest,
  ReserveResult,
  LeaseInfo,
  TimeContext,
  SettlementInput,
  SettlementResult,
  SettleOutcome,
  StoreHoldRequest,
  StoreHoldResult,
  EntityWrite,
  CacheEntityKind,
  CacheEntityRef,
  CacheEntityMap,
  CacheBatchRequest,
  CacheBatchResult,
  ReservationDimension,
  SlotDimension,
  RpmRequest,
  RpmResult,
  RpmOverride,
  SubscriptionStatus,
  SubscriptionInput,
  PlatformQuotaLimits,
  UsageLogRow,
  CacheRead,
  ReservationWindow,
} from './types.js';

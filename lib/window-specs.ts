// The spend windows of each entity, in checking order, with their rule, limit, usage and denial code:
// one list shared by the checks (lib/decisions.ts) and the reservations (lib/reservation-plan.ts).
import type { BillingErrorCode } from './errors.js';
import type { ApiKeyLimits, GroupLimits } from './subject.js';
import type { ApiKeyWindowsEntity, PlatformQuotaEntity, ReservationWindow, SubscriptionEntity } from './types.js';
import { subscriptionDailyRule, WINDOWS, type WindowRule } from './windows.js';

export interface WindowSpec {
  window: ReservationWindow;
  rule: WindowRule;
  /** null = no limit on this window. */
  limit: bigint | null;
  usage: bigint;
  startMs: number | null;
  code: BillingErrorCode;
}

/** docs/behaviour.md#subscription: limits from the group; daily, then weekly, then monthly. */
export function subscriptionWindows(entity: SubscriptionEntity, limits: GroupLimits): WindowSpec[] {
  return [
    {
      window: 'daily',
      rule: subscriptionDailyRule(entity.startsAtMs, entity.expiresAtMs),
      limit: limits.daily,
      usage: entity.dailyUsage,
      startMs: entity.dailyStartMs,
      code: 'DAILY_LIMIT_EXCEEDED',
    },
    {
      window: 'weekly',
      rule: WINDOWS.subscriptionWeekly,
      limit: limits.weekly,
      usage: entity.weeklyUsage,
      startMs: entity.weeklyStartMs,
      code: 'WEEKLY_LIMIT_EXCEEDED',
    },
    {
      window: 'monthly',
      rule: WINDOWS.subscriptionMonthly,
      limit: limits.monthly,
      usage: entity.monthlyUsage,
      startMs: entity.monthlyStartMs,
      code: 'MONTHLY_LIMIT_EXCEEDED',
    },
  ];
}

/** docs/behaviour.md#platform-quota: limits from the quota row (null = unlimited, 0 = blocked). */
export function platformQuotaWindows(entity: PlatformQuotaEntity): WindowSpec[] {
  return [
    {
      window: 'daily',
      rule: WINDOWS.quotaDaily,
      limit: entity.dailyLimit,
      usage: entity.dailyUsage,
      startMs: entity.dailyStartMs,
      code: 'USER_PLATFORM_DAILY_QUOTA_EXHAUSTED',
    },
    {
      window: 'weekly',
      rule: WINDOWS.quotaWeekly,
      limit: entity.weeklyLimit,
      usage: entity.weeklyUsage,
      startMs: entity.weeklyStartMs,
      code: 'USER_PLATFORM_WEEKLY_QUOTA_EXHAUSTED',
    },
    {
      window: 'monthly',
      rule: WINDOWS.quotaMonthly,
      limit: entity.monthlyLimit,
      usage: entity.monthlyUsage,
      startMs: entity.monthlyStartMs,
      code: 'USER_PLATFORM_MONTHLY_QUOTA_EXHAUSTED',
    },
  ];
}

/** docs/behaviour.md#api-key-windows: limits from the key (0 = unlimited); 5 h, then 1 d, then 7 d. */
export function apiKeyWindowSpecs(entity: ApiKeyWindowsEntity, limits: ApiKeyLimits): WindowSpec[] {
  const cap = (limit: bigint) => (limit > 0n ? limit : null);
  return [
    { window: '5h', rule: WINDOWS.key5h, limit: cap(limits.limit5h), usage: entity.usage5h, startMs: entity.start5hMs, code: 'API_KEY_RATE_5H_EXCEEDED' },
    { window: '1d', rule: WINDOWS.key1d, limit: cap(limits.limit1d), usage: entity.usage1d, startMs: entity.start1dMs, code: 'API_KEY_RATE_1D_EXCEEDED' },
    { window: '7d', rule: WINDOWS.key7d, limit: cap(limits.limit7d), usage: entity.usage7d, startMs: entity.start7dMs, code: 'API_KEY_RATE_7D_EXCEEDED' },
  ];
}

// The benchmark subject: balance mode with every check active (platform quota, key windows, user and
// group RPM caps high enough never to trip), and the admin writes that give it an account and a quota.
import type { BillingCore } from '../../lib/billing-core.js';
import type { BillingSubject } from '../../lib/types.js';

export const BENCH_PLATFORM = 'openai';
export const BENCH_GROUP_ID = 'bench-group';
/** RPM caps far above what 2 cores can send in a minute, so every request is counted and none is refused. */
export const NEVER_TRIPPING_RPM = 1_000_000_000;
/** USD limits far above what a benchmark spends, so the windows are evaluated and never deny. */
export const GENEROUS_LIMIT_USD = '1000000';

/**
 * A balance-mode subject for which every check of the chain runs: balance, platform quota, key
 * windows and both RPM caps. The per-group override is left unknown (undefined) on purpose, so the
 * override lookup is part of the measured path (answered by the cache once warm).
 */
export function benchSubject(userId: string): BillingSubject {
  return {
    user: { id: userId, rpmLimit: NEVER_TRIPPING_RPM },
    apiKey: { id: `key-${userId}`, rateLimit5h: GENEROUS_LIMIT_USD, rateLimit1d: GENEROUS_LIMIT_USD, rateLimit7d: GENEROUS_LIMIT_USD },
    group: { id: BENCH_GROUP_ID, billingType: 'standard', rpmLimit: NEVER_TRIPPING_RPM },
    platform: BENCH_PLATFORM,
  };
}

/** Gives the user a large balance and a platform quota row (admin writes also put both into the cache). */
export async function seedBenchUser(core: BillingCore, userId: string): Promise<void> {
  await core.admin.topUp(userId, GENEROUS_LIMIT_USD);
  await core.admin.setPlatformQuota(userId, BENCH_PLATFORM, {
    dailyLimitUsd: GENEROUS_LIMIT_USD,
    weeklyLimitUsd: GENEROUS_LIMIT_USD,
    monthlyLimitUsd: GENEROUS_LIMIT_USD,
  });
}

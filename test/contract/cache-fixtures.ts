// Entities of every cached kind for the cache contract suite, with a variant number so a test can tell
// which write a read returned, and fresh user ids so tests never share keys.
import type { CacheBatchRequest, CacheBatchResult, CacheEntityKind, CacheEntityMap, CacheEntityRef } from '../../lib/types.js';

let nextUser = 0;
const RUN = Math.random().toString(36).slice(2, 8);

/** A user id no other test in this process uses. */
export function freshUserId(): string {
  nextUser += 1;
  return `u${RUN}-${nextUser}`;
}

export interface KindCase<K extends CacheEntityKind> {
  kind: K;
  /** The field of the batch result that carries this kind. */
  slot: keyof CacheBatchResult;
  ref(userId: string): CacheEntityRef & { kind: K };
  /** The batch request reading only this kind. */
  batch(userId: string): CacheBatchRequest;
  /** A value at `version`; different variants differ in their data. */
  value(version: number, variant?: number): CacheEntityMap[K];
}

const T0 = Date.UTC(2025, 0, 6, 0, 0, 0);

export const balanceCase: KindCase<'balance'> = {
  kind: 'balance',
  slot: 'balance',
  ref: (userId) => ({ kind: 'balance', userId }),
  batch: (userId) => ({ userId, balance: true }),
  value: (version, variant = 0) => ({ version, balance: 1_000_000_000n - BigInt(variant) * 123_456_789n }),
};

export const subscriptionCase: KindCase<'subscription'> = {
  kind: 'subscription',
  slot: 'subscription',
  ref: (userId) => ({ kind: 'subscription', userId, groupId: 'g1' }),
  batch: (userId) => ({ userId, subscriptionGroupId: 'g1' }),
  value: (version, variant = 0) => ({
    version,
    subscriptionId: `sub-${variant}`,
    status: variant % 2 === 0 ? 'active' : 'suspended',
    startsAtMs: T0 - 86_400_000 - variant,
    expiresAtMs: T0 + 30 * 86_400_000,
    dailyUsage: 12_345n + BigInt(variant),
    weeklyUsage: 99_999_999n,
    monthlyUsage: 9_007_199_254_740_991n,
    dailyStartMs: T0,
    weeklyStartMs: variant === 0 ? null : T0 - 1000,
    monthlyStartMs: T0 - 86_400_000,
  }),
};

export const apiKeyWindowsCase: KindCase<'apiKeyWindows'> = {
  kind: 'apiKeyWindows',
  slot: 'apiKeyWindows',
  ref: (userId) => ({ kind: 'apiKeyWindows', userId, apiKeyId: 'k1' }),
  batch: (userId) => ({ userId, apiKeyId: 'k1' }),
  value: (version, variant = 0) => ({
    version,
    usage5h: BigInt(variant),
    usage1d: 50_000_000n,
    usage7d: 250_000_000n,
    start5hMs: variant === 0 ? null : T0 + 3_600_000,
    start1dMs: T0,
    start7dMs: null,
  }),
};

export const platformQuotaCase: KindCase<'platformQuota'> = {
  kind: 'platformQuota',
  slot: 'platformQuota',
  ref: (userId) => ({ kind: 'platformQuota', userId, platform: 'anthropic' }),
  batch: (userId) => ({ userId, platform: 'anthropic' }),
  value: (version, variant = 0) => ({
    version,
    sentinel: false,
    dailyLimit: 500_000_000n,
    weeklyLimit: variant === 0 ? null : 0n,
    monthlyLimit: 10_000_000_000n + BigInt(variant),
    dailyUsage: 1n,
    weeklyUsage: 0n,
    monthlyUsage: 7_000_000_000n,
    dailyStartMs: T0,
    weeklyStartMs: T0,
    monthlyStartMs: null,
  }),
};

/** The "no quota row" marker of docs/behaviour.md#platform-quota. */
export function sentinelQuota(version = 0): CacheEntityMap['platformQuota'] {
  return {
    version,
    sentinel: true,
    dailyLimit: null,
    weeklyLimit: null,
    monthlyLimit: null,
    dailyUsage: 0n,
    weeklyUsage: 0n,
    monthlyUsage: 0n,
    dailyStartMs: T0,
    weeklyStartMs: T0,
    monthlyStartMs: T0,
  };
}

export const rpmOverrideCase: KindCase<'rpmOverride'> = {
  kind: 'rpmOverride',
  slot: 'rpmOverride',
  ref: (userId) => ({ kind: 'rpmOverride', userId, groupId: 'g1' }),
  batch: (userId) => ({ userId, rpmOverrideGroupId: 'g1' }),
  // Variant 0 is "known to have no override": that answer is cached too (docs/behaviour.md#requests-per-minute).
  value: (version, variant = 0) => ({ version, value: variant === 0 ? null : variant * 10 }),
};

export const ALL_KINDS: readonly KindCase<CacheEntityKind>[] = [
  balanceCase,
  subscriptionCase,
  apiKeyWindowsCase,
  platformQuotaCase,
  rpmOverrideCase,
] as KindCase<CacheEntityKind>[];

/** One request reading every kind at once. */
export function fullBatch(userId: string): CacheBatchRequest {
  return { userId, balance: true, subscriptionGroupId: 'g1', apiKeyId: 'k1', platform: 'anthropic', rpmOverrideGroupId: 'g1' };
}

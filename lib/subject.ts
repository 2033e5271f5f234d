// Turns the application's BillingSubject into validated ids, exact limits and the billing mode (docs/behaviour.md#the-chain-in-order).
import { parseCostUsd, parseUsd } from './money.js';
import type { BillingMode, BillingSubject } from './types.js';
import { BillingValidationError, describeInput, normalizeId, normalizePlatform } from './validate.js';

export interface ApiKeyLimits {
  /** 0n = unlimited (docs/behaviour.md#api-key-windows). */
  limit5h: bigint;
  limit1d: bigint;
  limit7d: bigint;
}

export interface GroupLimits {
  /** null = unlimited: a group limit is present iff non-null and > 0 (docs/behaviour.md#subscription). */
  daily: bigint | null;
  weekly: bigint | null;
  monthly: bigint | null;
}

export interface NormalizedSubject {
  userId: string;
  userRpmLimit: number;
  /** undefined = not given by the subject (look it up); null = known to have none. */
  groupRpmOverride: number | null | undefined;
  apiKeyId: string | null;
  /** Present only when the key has at least one limit > 0. */
  apiKeyLimits: ApiKeyLimits | null;
  groupId: string | null;
  groupLimits: GroupLimits;
  groupRpmLimit: number;
  subscriptionId: string | null;
  platform: string | null;
  mode: BillingMode;
  /** 0 = unlimited. */
  userMaxConcurrency: number;
  /** 0 = unlimited (or no key). */
  apiKeyMaxConcurrency: number;
}

/** A concurrency cap: a non-negative integer, null or absent = 0 = unlimited. */
function concurrencyCap(value: unknown, field: string): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw new BillingValidationError(field, `${field} must be a non-negative integer or null, got ${describeInput(value)}`);
}

/**
 * An RPM cap or override: an integer, where ≤ 0 means none (a cap) or exempt (an override), as the
 * reference gate reads them. Anything that is not an integer at all is refused.
 */
function rpm(value: unknown, field: string): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value > 0 ? value : 0;
  throw new BillingValidationError(field, `${field} must be an integer (≤ 0: none), got ${describeInput(value)}`);
}

/**
 * Limits parsed before: the same few limit values arrive with every request of a key or group, and
 * exact decimal parsing is a noticeable share of a warm request. Bounded; cleared when full.
 */
const parsedLimits = new Map<string | number, bigint>();
const PARSED_LIMITS_MAX = 4096;

/** A key's USD limit: 0 = none; negative input of any size is refused (parseCostUsd). */
function usdLimit(value: unknown, field: string): bigint {
  if (value === undefined || value === null) return 0n;
  const known = typeof value === 'string' || typeof value === 'number' ? parsedLimits.get(value) : undefined;
  if (known !== undefined) return known;
  const units = parseCostUsd(value as string | number, field);
  if (parsedLimits.size >= PARSED_LIMITS_MAX) parsedLimits.clear();
  parsedLimits.set(value as string | number, units);
  return units;
}

/** A group's USD limit: present iff > 0; ≤ 0 means no limit, as the reference gate reads it. */
function groupLimit(value: unknown, field: string): bigint | null {
  if (value === undefined || value === null) return null;
  const known = typeof value === 'string' || typeof value === 'number' ? parsedLimits.get(value) : undefined;
  const units = known ?? parseUsd(value as string | number, field);
  return units > 0n ? units : null;
}

/** Validates and normalises a subject; throws BillingValidationError (or MoneyError) naming the field. */
export function normalizeSubject(subject: BillingSubject): NormalizedSubject {
  if (!subject || typeof subject !== 'object' || !subject.user || typeof subject.user !== 'object') {
    throw new BillingValidationError('subject.user', 'subject.user is required');
  }
  const { user, apiKey, group, subscription } = subject;
  const userId = normalizeId(user.id, 'subject.user.id');

  let apiKeyId: string | null = null;
  let apiKeyLimits: ApiKeyLimits | null = null;
  if (apiKey) {
    apiKeyId = normalizeId(apiKey.id, 'subject.apiKey.id');
    const limits = {
      limit5h: usdLimit(apiKey.rateLimit5h, 'subject.apiKey.rateLimit5h'),
      limit1d: usdLimit(apiKey.rateLimit1d, 'subject.apiKey.rateLimit1d'),
      limit7d: usdLimit(apiKey.rateLimit7d, 'subject.apiKey.rateLimit7d'),
    };
    if (limits.limit5h > 0n || limits.limit1d > 0n || limits.limit7d > 0n) apiKeyLimits = limits;
  }

  let groupId: string | null = null;
  let groupLimits: GroupLimits = { daily: null, weekly: null, monthly: null };
  let groupRpmLimit = 0;
  let billingType: 'standard' | 'subscription' = 'standard';
  if (group) {
    groupId = normalizeId(group.id, 'subject.group.id');
    if (group.billingType !== 'standard' && group.billingType !== 'subscription') {
      throw new BillingValidationError(
        'subject.group.billingType',
        `subject.group.billingType must be 'standard' or 'subscription', got ${String(group.billingType)}`,
      );
    }
    billingType = group.billingType;
    groupLimits = {
      daily: groupLimit(group.dailyLimitUsd, 'subject.group.dailyLimitUsd'),
      weekly: groupLimit(group.weeklyLimitUsd, 'subject.group.weeklyLimitUsd'),
      monthly: groupLimit(group.monthlyLimitUsd, 'subject.group.monthlyLimitUsd'),
    };
    groupRpmLimit = rpm(group.rpmLimit, 'subject.group.rpmLimit');
  }

  const subscriptionId = subscription ? normalizeId(subscription.id, 'subject.subscription.id') : null;
  const platform = subject.platform ? normalizePlatform(subject.platform, 'subject.platform') : null;
  const groupRpmOverride =
    user.groupRpmOverride === undefined ? undefined : user.groupRpmOverride === null ? null : rpm(user.groupRpmOverride, 'subject.user.groupRpmOverride');

  return {
    userId,
    userRpmLimit: rpm(user.rpmLimit, 'subject.user.rpmLimit'),
    groupRpmOverride,
    apiKeyId,
    apiKeyLimits,
    groupId,
    groupLimits,
    groupRpmLimit,
    subscriptionId,
    platform,
    userMaxConcurrency: concurrencyCap(user.maxConcurrency, 'subject.user.maxConcurrency'),
    apiKeyMaxConcurrency: apiKey ? concurrencyCap(apiKey.maxConcurrency, 'subject.apiKey.maxConcurrency') : 0,
    // Subscription mode iff the group is subscription-billed AND the subject carries a subscription.
    mode: groupId !== null && billingType === 'subscription' && subscriptionId !== null ? 'subscription' : 'balance',
  };
}

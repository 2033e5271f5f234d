// Turns an authenticated key (key, user, group) into the billing subject the middleware checks.
import type { BillingSubject } from '../../lib/index.js';
import type { Principal } from './gateway-repo.js';
import type { Platform } from './prices.js';

/**
 * The subscription id the subject carries for a member of a subscription group. The billing
 * store keeps one subscription per (user, group), so the pair identifies it; the library reads
 * the plan's state by (user, group), and a revoked or expired plan answers 403 SUBSCRIPTION_INVALID.
 */
export function subscriptionIdOf(userId: string, groupId: string): string {
  return `${userId}.${groupId}`;
}

export function buildSubject(principal: Principal, platform: Platform): BillingSubject {
  const { key, user, group } = principal;
  return {
    // groupRpmOverride is left out on purpose: the library looks it up and caches the answer,
    // and the admin route's setRpmOverride invalidates that cache entry.
    user: { id: user.id, rpmLimit: user.rpmLimit, maxConcurrency: user.maxConcurrency },
    apiKey: {
      id: key.id,
      ...(key.rateLimit5hUsd !== null && { rateLimit5h: key.rateLimit5hUsd }),
      ...(key.rateLimit1dUsd !== null && { rateLimit1d: key.rateLimit1dUsd }),
      ...(key.rateLimit7dUsd !== null && { rateLimit7d: key.rateLimit7dUsd }),
    },
    group: group && {
      id: group.id,
      billingType: group.billingType,
      dailyLimitUsd: group.dailyLimitUsd,
      weeklyLimitUsd: group.weeklyLimitUsd,
      monthlyLimitUsd: group.monthlyLimitUsd,
      rpmLimit: group.rpmLimit,
    },
    subscription: group?.billingType === 'subscription' ? { id: subscriptionIdOf(user.id, group.id) } : null,
    platform,
  };
}

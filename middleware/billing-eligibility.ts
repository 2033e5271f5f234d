// billingEligibility: the whole chain — context, breaker first, balance/subscription, quota, key windows,
// the reservation, RPM last — then the RateLimit headers of an admitted request.
import compose from 'koa-compose';
import type { Context, Middleware, Next } from 'koa';
import { CHECK_NAMES } from '../lib/billing-request.js';
import type { CheckName } from '../lib/decisions.js';
import { BillingConfigError } from '../lib/options.js';
import { createBillingContext, setRateLimitHeaders, type BillingContextOptions } from './billing-context.js';
import { apiKeyWindows, balanceCheck, breakerGuard, platformQuota, reserveEstimate, rpmLimit, subscriptionCheck } from './checks.js';

export interface BillingEligibilityOptions extends BillingContextOptions {
  /** Checks in shadow mode: evaluated, logged and counted as `shadow_deny`, never blocking. Default none. */
  shadow?: readonly CheckName[];
}

const KNOWN_CHECKS = new Set<string>(Object.values(CHECK_NAMES));

function parseShadow(value: unknown): ReadonlySet<CheckName> {
  if (value === undefined) return new Set();
  if (!Array.isArray(value) || !value.every((name) => typeof name === 'string' && KNOWN_CHECKS.has(name))) {
    throw new BillingConfigError('billingEligibility.shadow', `billingEligibility.shadow must be an array of check names (${[...KNOWN_CHECKS].join(', ')})`);
  }
  return new Set(value as CheckName[]);
}

/** Sets the RateLimit fields once every check has passed, before the handler writes the response. */
function rateLimitHeaders(ctx: Context, next: Next): Promise<unknown> {
  const state = ctx.state.billing;
  if (state) setRateLimitHeaders(ctx, state);
  return next();
}

export function billingEligibility(options: BillingEligibilityOptions): Middleware {
  const { shadow: shadowOption, ...contextOptions } = options ?? ({} as BillingEligibilityOptions);
  const shadow = parseShadow(shadowOption);
  const mode = (check: CheckName) => ({ shadow: shadow.has(check) });
  // RPM last, so requests that fail anyway never consume RPM (SPEC §1.8); the reservation (a no-op
  // without estimateCost) just before it, once every limit it counts against has been read.
  const chain = compose([
    createBillingContext(contextOptions, 'billingEligibility'),
    breakerGuard(mode('breaker')),
    balanceCheck(mode('balance')),
    subscriptionCheck(mode('subscription')),
    platformQuota(mode('platformQuota')),
    apiKeyWindows(mode('apiKeyWindows')),
    reserveEstimate(mode('reservation')),
    rpmLimit(mode('rpm')),
    rateLimitHeaders,
  ]);
  return function billingEligibility(ctx: Context, next: Next): Promise<unknown> {
    return chain(ctx, next);
  };
}

// billingEligibility: the whole chain — context, breaker first, balance/subscription, quota, key windows, RPM last.
import compose from 'koa-compose';
import type { Context, Middleware, Next } from 'koa';
import { createBillingContext, type BillingContextOptions } from './billing-context.js';
import { apiKeyWindows, balanceCheck, breakerGuard, platformQuota, reserveEstimate, rpmLimit, subscriptionCheck } from './checks.js';

export type BillingEligibilityOptions = BillingContextOptions;

export function billingEligibility(options: BillingEligibilityOptions): Middleware {
  // RPM last, so requests that fail anyway never consume RPM (SPEC §1.8); the reservation (a no-op
  // without estimateCost) just before it, once every limit it counts against has been read.
  const chain = compose([
    createBillingContext(options, 'billingEligibility'),
    breakerGuard(),
    balanceCheck(),
    subscriptionCheck(),
    platformQuota(),
    apiKeyWindows(),
    reserveEstimate(),
    rpmLimit(),
  ]);
  return function billingEligibility(ctx: Context, next: Next): Promise<unknown> {
    return chain(ctx, next);
  };
}

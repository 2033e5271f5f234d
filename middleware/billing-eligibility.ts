// billingEligibility: the whole chain — context, breaker first, balance/subscription, quota, key windows,
// the reservation, RPM last — then the RateLimit headers of an admitted request.
import type { Context, Middleware, Next } from 'koa';
import { CHECK_NAME_LIST, type CheckName } from '../lib/decisions.js';
import { BillingConfigError } from '../lib/options.js';
import { createBillingContext, setRateLimitHeaders, type BillingContextOptions, type BillingState } from './billing-context.js';

export interface BillingEligibilityOptions extends BillingContextOptions {
  /** Checks in shadow mode: evaluated, logged and counted as `shadow_deny`, never blocking. Default none. */
  shadow?: readonly CheckName[];
}

const KNOWN_CHECKS = new Set<string>(CHECK_NAME_LIST);

function parseShadow(value: unknown): ReadonlySet<CheckName> {
  if (value === undefined) return new Set();
  if (!Array.isArray(value) || !value.every((name) => typeof name === 'string' && KNOWN_CHECKS.has(name))) {
    throw new BillingConfigError('billingEligibility.shadow', `billingEligibility.shadow must be an array of check names (${[...KNOWN_CHECKS].join(', ')})`);
  }
  return new Set(value as CheckName[]);
}

export function billingEligibility(options: BillingEligibilityOptions): Middleware {
  const { shadow: shadowOption, ...contextOptions } = options ?? ({} as BillingEligibilityOptions);
  const shadow = parseShadow(shadowOption);
  const context = createBillingContext(contextOptions, 'billingEligibility');
  // Breaker first, RPM last so that requests that fail anyway never consume RPM (docs/behaviour.md#the-chain-in-order), the
  // reservation (a no-op without estimateCost) just before it, once every limit it counts against
  // has been read. One loop (runChain) instead of one composed middleware per check: the same checks
  // as breakerGuard() … rpmLimit() mounted in that order, without a dispatch frame for each, and
  // knowing RPM runs last lets a warm request count it in the same round trip as its read.
  async function runChecks(ctx: Context, next: Next): Promise<unknown> {
    const state = ctx.state.billing as BillingState;
    await state.request.runChain(shadow);
    // Set before the handler writes the response (denials get theirs from billingContext).
    setRateLimitHeaders(ctx, state);
    return next();
  }

  return function billingEligibility(ctx: Context, next: Next): Promise<unknown> {
    return context(ctx, () => runChecks(ctx, next));
  };
}

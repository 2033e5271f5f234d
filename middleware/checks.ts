// The six check middlewares: thin adapters over the request's pass through the checks that
// billingContext attached. Denials are thrown and rendered by billingContext.
import type { Context, Middleware, Next } from 'koa';
import type { BillingRequest } from '../lib/billing-request.js';

type CheckMethod = 'breaker' | 'balance' | 'subscription' | 'platformQuota' | 'apiKeyWindows' | 'reserve' | 'rpm';

function checkMiddleware(name: string, method: CheckMethod): Middleware {
  const middleware = async (ctx: Context, next: Next): Promise<void> => {
    const billing = ctx.state.billing;
    if (!billing) {
      throw new Error(`${name}() needs billingContext({ core, subject }) (or billingEligibility()) earlier in the middleware chain`);
    }
    await (billing.request as BillingRequest)[method]();
    await next();
  };
  // Named like the factory, as koa middleware are, so stack traces and debug output say which check.
  return Object.defineProperty(middleware, 'name', { value: name });
}

/** Rejects with 503 while the circuit breaker is open (SPEC §1.2, §5); mount it first. */
export const breakerGuard = (): Middleware => checkMiddleware('breakerGuard', 'breaker');
/** The prepaid balance must be positive and at least the reserve (SPEC §2.1; balance mode only). */
export const balanceCheck = (): Middleware => checkMiddleware('balanceCheck', 'balance');
/** An active subscription within the group's daily/weekly/monthly limits (SPEC §2.2; subscription mode only). */
export const subscriptionCheck = (): Middleware => checkMiddleware('subscriptionCheck', 'subscription');
/** The user × platform USD quota windows (SPEC §2.3; balance mode only; fails open). */
export const platformQuota = (): Middleware => checkMiddleware('platformQuota', 'platformQuota');
/** The key's 5 h / 1 d / 7 d USD spend windows (SPEC §2.4; fails open). */
export const apiKeyWindows = (): Middleware => checkMiddleware('apiKeyWindows', 'apiKeyWindows');
/** Holds the request's estimated cost against every limit checked before it (issue 9); mount it after them, before rpmLimit. */
export const reserveEstimate = (): Middleware => checkMiddleware('reserveEstimate', 'reserve');
/** Per-minute request caps per user and per user within a group (SPEC §2.5; fails open); mount it last. */
export const rpmLimit = (): Middleware => checkMiddleware('rpmLimit', 'rpm');

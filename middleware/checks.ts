// The six check middlewares: thin adapters over the request's pass through the checks that
// billingContext attached. Denials are thrown and rendered by billingContext.
import type { Context, Middleware, Next } from 'koa';
import type { CheckMethod } from '../lib/billing-request.js';
import { parseOptions, v } from '../lib/options.js';

export interface CheckMiddlewareOptions {
  /** Shadow mode: evaluate, log and count (outcome `shadow_deny`) but never block. Default false. */
  shadow?: boolean;
}

const CHECK_DEFAULTS: Required<CheckMiddlewareOptions> = Object.freeze({ shadow: false });

function checkMiddleware(name: string, method: CheckMethod, options: CheckMiddlewareOptions | undefined): Middleware {
  const { shadow } = parseOptions<Required<CheckMiddlewareOptions>>(name, options, CHECK_DEFAULTS, { shadow: v.boolean() });
  const middleware = async (ctx: Context, next: Next): Promise<void> => {
    const billing = ctx.state.billing;
    if (!billing) {
      throw new Error(`${name}() needs billingContext({ core, subject }) (or billingEligibility()) earlier in the middleware chain`);
    }
    await billing.request.run(method, shadow);
    await next();
  };
  // Named like the factory, as koa middleware are, so stack traces and debug output say which check.
  return Object.defineProperty(middleware, 'name', { value: name });
}

/** Rejects with 503 while the circuit breaker is open (docs/behaviour.md#the-chain-in-order, docs/behaviour.md#circuit-breaker); mount it first. */
export const breakerGuard = (options?: CheckMiddlewareOptions): Middleware => checkMiddleware('breakerGuard', 'breaker', options);
/** The prepaid balance must be positive and at least the reserve (docs/behaviour.md#balance; balance mode only). */
export const balanceCheck = (options?: CheckMiddlewareOptions): Middleware => checkMiddleware('balanceCheck', 'balance', options);
/** An active subscription within the group's daily/weekly/monthly limits (docs/behaviour.md#subscription; subscription mode only). */
export const subscriptionCheck = (options?: CheckMiddlewareOptions): Middleware => checkMiddleware('subscriptionCheck', 'subscription', options);
/** The user × platform USD quota windows (docs/behaviour.md#platform-quota; balance mode only; fails open). */
export const platformQuota = (options?: CheckMiddlewareOptions): Middleware => checkMiddleware('platformQuota', 'platformQuota', options);
/** The key's 5 h / 1 d / 7 d USD spend windows (docs/behaviour.md#api-key-windows; fails open). */
export const apiKeyWindows = (options?: CheckMiddlewareOptions): Middleware => checkMiddleware('apiKeyWindows', 'apiKeyWindows', options);
/**
 * Takes the request's holds in one atomic step: its estimated cost (billingContext's `estimateCost`)
 * against every limit checked before it, and its concurrency slots. Mount it after those checks,
 * before rpmLimit. It and concurrencyLimit are the same step: mount either (both take the holds once).
 */
export const reserveEstimate = (options?: CheckMiddlewareOptions): Middleware => checkMiddleware('reserveEstimate', 'reserve', options);
/**
 * Bounds the requests in flight per user and per API key (`subject.user.maxConcurrency`,
 * `subject.apiKey.maxConcurrency`; null or 0 = unlimited): 429 CONCURRENCY_LIMIT_EXCEEDED beyond
 * them. The slot is held until the response ends (or the request is settled), renewed meanwhile.
 * The same step as reserveEstimate: the slots and the estimate are taken together, all or nothing.
 */
export const concurrencyLimit = (options?: CheckMiddlewareOptions): Middleware => checkMiddleware('concurrencyLimit', 'reserve', options);
/** Per-minute request caps per user and per user within a group (docs/behaviour.md#requests-per-minute; fails open); mount it last. */
export const rpmLimit = (options?: CheckMiddlewareOptions): Middleware => checkMiddleware('rpmLimit', 'rpm', options);

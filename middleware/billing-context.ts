// billingContext: resolves the subject once, attaches ctx.state.billing, and renders the denials the
// checks after it throw (only theirs: errors of later handlers pass through untouched).
import type { Context, Middleware, Next } from 'koa';
import type { BillingCore } from '../lib/billing-core.js';
import { isCheckDenial, type BillingDecision, type BillingRequest } from '../lib/billing-request.js';
import { BillingError } from '../lib/errors.js';
import { MoneyError, parseCostUsd, type Usd } from '../lib/money.js';
import { parseOptions, v } from '../lib/options.js';
import type { SettleRequest, SettlementReceipt } from '../lib/settlement.js';
import { normalizeSubject } from '../lib/subject.js';
import type { BillingMode, BillingSubject } from '../lib/types.js';
import { BillingValidationError } from '../lib/validate.js';
import { buildRateLimitHeaders } from '../lib/ratelimit-headers.js';
import { renderDenial, renderFailure, type DenialFormat } from './render.js';

export type SubjectResolver = (ctx: Context) => BillingSubject | null | undefined | Promise<BillingSubject | null | undefined>;
/** The request's estimated cost in USD, or undefined when it cannot be estimated (no reservation then). */
export type CostEstimator = (ctx: Context) => Usd | undefined | Promise<Usd | undefined>;

export interface BillingContextOptions {
  /** The BillingCore (required). */
  core: BillingCore;
  /** Resolves who is asking, e.g. `(ctx) => ctx.state.subject` (required). */
  subject: SubjectResolver;
  /** Denial body format: 'openai' (default), 'anthropic', or a function rendering it yourself. */
  format?: DenialFormat;
  /**
   * Estimated cost of the request (issue 9). When given, the chain reserves it against the balance or
   * subscription windows, the platform quota and the key windows, atomically, before RPM; the
   * settlement replaces it with the actual cost, and a request that ends without one releases it.
   */
  estimateCost?: CostEstimator;
  /**
   * IETF RateLimit-Policy / RateLimit response fields, one named policy per RPM cap and spend window
   * (issue 10). Default true; false turns them off.
   */
  rateLimitHeaders?: boolean;
}

/** ctx.state.billing (DESIGN §2). */
export interface BillingState {
  core: BillingCore;
  subject: BillingSubject;
  mode: BillingMode;
  /** Each check that ran: outcome, limits, usage, reset times. */
  decision: BillingDecision;
  /** Settles this request's cost for this subject (replacing its reservation, if any). */
  settle(input: Omit<SettleRequest, 'subject'>): Promise<SettlementReceipt>;
  /** The request's pass through the checks (used by the check middlewares). */
  request: BillingRequest;
  /** Whether RateLimit headers are sent for this request. */
  rateLimitHeaders: boolean;
}

declare module 'koa' {
  interface DefaultState {
    billing?: BillingState;
  }
}

type ParsedContextOptions = Required<Omit<BillingContextOptions, 'estimateCost'>> & { estimateCost: CostEstimator | undefined };

/** Validators of billingContext's options (billingEligibility parses its own `shadow` first). */
const CONTEXT_OPTION_VALIDATORS = {
  core: v.object<BillingCore>('check', 'beginRequest', 'settleFor'),
  subject: v.func<SubjectResolver>(),
  format: (value: unknown, name: string) => (typeof value === 'function' ? (value as DenialFormat) : v.oneOf('openai', 'anthropic')(value, name)),
  estimateCost: v.optional(v.func<CostEstimator>()),
  rateLimitHeaders: v.boolean(),
};

const CONTEXT_DEFAULTS: ParsedContextOptions = Object.freeze({
  core: undefined as never, subject: undefined as never, format: 'openai', estimateCost: undefined, rateLimitHeaders: true,
});

function parseContextOptions(options: unknown, scope: string): Readonly<ParsedContextOptions> {
  return parseOptions<ParsedContextOptions>(scope, options, CONTEXT_DEFAULTS, CONTEXT_OPTION_VALIDATORS);
}

/** Sets the RateLimit fields from what the checks recorded so far. */
export function setRateLimitHeaders(ctx: Context, state: BillingState): void {
  if (!state.rateLimitHeaders) return;
  if (ctx.headerSent) return;
  const fields = buildRateLimitHeaders(state.request.decision.evaluations, state.request.time.nowMs);
  if (fields === null) return;
  // Straight to Node (ctx.set would walk the object and re-check each value's type).
  ctx.res.setHeader('RateLimit-Policy', fields['RateLimit-Policy']);
  ctx.res.setHeader('RateLimit', fields.RateLimit);
}

function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

/** Releases the request's reservation once the response is over, unless a settlement took it. */
function releaseWhenDone(ctx: Context, request: BillingRequest): void {
  if (!request.lease) return;
  if (ctx.res.writableFinished || ctx.res.destroyed) request.releaseLease();
  else ctx.res.once('close', () => request.releaseLease());
}

/** Whether the client went away: the response closed before it was finished. */
function clientGone(ctx: Context): boolean {
  return (ctx.res.closed || ctx.res.destroyed) && !ctx.res.writableFinished;
}

/**
 * The request's cancellation, created only when a check needs it: the client went away. Never the
 * request stream's state: Node destroys the request once its body has been read, which every
 * gateway does before billing (it needs the model and the token limits), and that must not read
 * as a client that left.
 */
function cancellationOf(ctx: Context): () => AbortSignal {
  let controller: AbortController | undefined;
  return () => {
    if (!controller) {
      const created = new AbortController();
      controller = created;
      if (clientGone(ctx)) created.abort();
      else ctx.res.once('close', () => { if (!ctx.res.writableFinished) created.abort(); });
    }
    return controller.signal;
  };
}

export function billingContext(options: BillingContextOptions): Middleware {
  return createBillingContext(options, 'billingContext');
}

/** billingContext with the factory name that configuration errors should mention. */
export function createBillingContext(options: BillingContextOptions, scope: string): Middleware {
  const { core, subject: resolve, format, estimateCost, rateLimitHeaders } = parseContextOptions(options, scope);

  return async function billingContext(ctx: Context, next: Next): Promise<void> {
    let state: BillingState;
    try {
      const resolved = resolve(ctx);
      // A resolver that answers at once (a key cache) is not awaited: one microtask less per request.
      const subject = isThenable(resolved) ? await resolved : resolved;
      if (!subject) throw new BillingError('INVALID_SUBJECT', { message: 'No billing subject for this request' });
      const normalized = normalizeSubject(subject);
      const estimate = estimateCost ? await estimateCost(ctx) : undefined;
      const request = core.beginRequest(normalized, cancellationOf(ctx), estimate === undefined ? undefined : parseCostUsd(estimate, 'estimateCost'));
      state = {
        core,
        subject,
        mode: normalized.mode,
        decision: request.decision,
        request,
        rateLimitHeaders,
        settle: (input) => core.settleFor({ ...input, subject }, normalized, request.takeLease()?.leaseId),
      };
    } catch (err) {
      if (err instanceof BillingValidationError || err instanceof MoneyError) {
        // The field names are ours and safe to show; the values are not echoed.
        return renderDenial(ctx, new BillingError('INVALID_SUBJECT', { message: `Invalid billing input: ${err.field}` }), format);
      }
      if (err instanceof BillingError) return renderDenial(ctx, err, format);
      return renderFailure(ctx, err, format);
    }
    ctx.state.billing = state;
    try {
      await next();
    } catch (err) {
      if (!isCheckDenial(err)) throw err;
      setRateLimitHeaders(ctx, state);
      renderDenial(ctx, err, format);
    } finally {
      releaseWhenDone(ctx, state.request);
    }
  };
}

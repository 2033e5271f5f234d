// billingContext: resolves the subject once, attaches ctx.state.billing, and renders the denials the
// checks after it throw (only theirs: errors of later handlers pass through untouched).
import type { Context, Middleware, Next } from 'koa';
import type { BillingCore } from '../lib/billing-core.js';
import { isCheckDenial, type BillingDecision, type BillingRequest } from '../lib/billing-request.js';
import { BillingError } from '../lib/errors.js';
import { MoneyError, parseCostUsd, type Usd } from '../lib/money.js';
import { BillingConfigError, describeValue, parseOptions, v } from '../lib/options.js';
import type { SettleRequest, SettlementReceipt } from '../lib/settlement.js';
import { normalizeSubject } from '../lib/subject.js';
import type { BillingMode, BillingSubject } from '../lib/types.js';
import { BillingValidationError } from '../lib/validate.js';
import { buildRateLimitHeaders, type RateLimitFamilies, type RateLimitHeaderFields } from '../lib/ratelimit-headers.js';
import { extendHold, type HoldExtensionResult } from '../lib/hold-extension.js';
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
   * Estimated cost of the request (docs/holds.md). When given, the chain reserves it against the balance or
   * subscription windows, the platform quota and the key windows, atomically, before RPM; the
   * settlement replaces it with the actual cost, and a request that ends without one releases it.
   */
  estimateCost?: CostEstimator;
  /**
   * What is left, in response fields (docs/ratelimit-fields.md): `requests` = the IETF
   * RateLimit-Policy / RateLimit fields (RPM caps, concurrency slots), `spend` = the package's
   * Billing-Spend field (USD windows, balance). Default true (both);
   * false turns both off; `{ requests, spend }` each (an omitted family stays on).
   */
  rateLimitHeaders?: boolean | Partial<RateLimitFamilies>;
}

/** ctx.state.billing (docs/architecture.md). */
export interface BillingState {
  core: BillingCore;
  subject: BillingSubject;
  mode: BillingMode;
  /** Each check that ran: outcome, limits, usage, reset times. */
  decision: BillingDecision;
  /** Settles this request's cost for this subject (replacing its reservation, if any). */
  settle(input: Omit<SettleRequest, 'subject'>): Promise<SettlementReceipt>;
  /**
   * Grows this request's hold by `amountUsd` against every limit it was reserved on, all or nothing
   * (a metered stream, docs/stream-metering.md). Rejects only for a bad amount.
   */
  extendHold(amountUsd: Usd): Promise<HoldExtensionResult>;
  /** @internal The request's pass through the checks (used by the check middlewares). */
  request: BillingRequest;
  /** Which families of RateLimit fields are sent for this request (null: none). */
  rateLimitHeaders: Readonly<RateLimitFamilies> | null;
}

declare module 'koa' {
  interface DefaultState {
    billing?: BillingState;
  }
}

type ParsedContextOptions = Required<Omit<BillingContextOptions, 'estimateCost' | 'rateLimitHeaders'>> & {
  estimateCost: CostEstimator | undefined;
  rateLimitHeaders: Readonly<RateLimitFamilies> | null;
};

const FAMILY_NAMES = ['requests', 'spend'] as const;

/** `rateLimitHeaders`: a boolean for both families, or an object naming either; null when none is on. */
function rateLimitFamilies(value: unknown, name: string): Readonly<RateLimitFamilies> | null {
  if (value === true) return Object.freeze({ requests: true, spend: true });
  if (value === false) return null;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BillingConfigError(name, `${name} must be a boolean or { requests?: boolean, spend?: boolean }, got ${describeValue(value)}`);
  }
  const families = { requests: true, spend: true };
  for (const [key, on] of Object.entries(value)) {
    if (!(FAMILY_NAMES as readonly string[]).includes(key))
      throw new BillingConfigError(`${name}.${key}`, `${name}.${key} is not an option (known: ${FAMILY_NAMES.join(', ')})`);
    if (on === undefined) continue;
    families[key as keyof RateLimitFamilies] = v.boolean()(on, `${name}.${key}`);
  }
  return families.requests || families.spend ? Object.freeze(families) : null;
}

/** Validators of billingContext's options (billingEligibility parses its own `shadow` first). */
const CONTEXT_OPTION_VALIDATORS = {
  core: v.object<BillingCore>('check', 'beginRequest', 'settleFor'),
  subject: v.func<SubjectResolver>(),
  format: (value: unknown, name: string) => (typeof value === 'function' ? (value as DenialFormat) : v.oneOf('openai', 'anthropic')(value, name)),
  estimateCost: v.optional(v.func<CostEstimator>()),
  rateLimitHeaders: rateLimitFamilies,
};

const CONTEXT_DEFAULTS: ParsedContextOptions = Object.freeze({
  core: undefined as never,
  subject: undefined as never,
  format: 'openai',
  estimateCost: undefined,
  rateLimitHeaders: { requests: true, spend: true },
});

function parseContextOptions(options: unknown, scope: string): Readonly<ParsedContextOptions> {
  return parseOptions<ParsedContextOptions>(scope, options, CONTEXT_DEFAULTS, CONTEXT_OPTION_VALIDATORS);
}

/** Sets the RateLimit fields from what the checks recorded so far. */
export function setRateLimitHeaders(ctx: Context, state: BillingState): void {
  if (state.rateLimitHeaders === null) return;
  if (ctx.headerSent) return;
  const fields = buildRateLimitHeaders(state.request.decision.evaluations, state.request.time.nowMs, state.rateLimitHeaders);
  if (fields === null) return;
  // Straight to Node (ctx.set would walk the object and re-check each value's type).
  for (const name in fields) ctx.res.setHeader(name, fields[name as keyof RateLimitHeaderFields]!);
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
      else
        ctx.res.once('close', () => {
          if (!ctx.res.writableFinished) created.abort();
        });
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
        extendHold: (amountUsd) => extendHold(request, amountUsd),
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

// billingContext: resolves the subject once, attaches ctx.state.billing, and renders the denials the
// checks after it throw (only theirs: errors of later handlers pass through untouched).
import type { Context, Middleware, Next } from 'koa';
import type { BillingCore } from '../lib/billing-core.js';
import { isCheckDenial, type BillingDecision, type BillingRequest } from '../lib/billing-request.js';
import { BillingError } from '../lib/errors.js';
import { MoneyError } from '../lib/money.js';
import { parseOptions, v } from '../lib/options.js';
import type { SettleRequest, SettlementReceipt } from '../lib/settlement.js';
import { normalizeSubject } from '../lib/subject.js';
import type { BillingMode, BillingSubject } from '../lib/types.js';
import { BillingValidationError } from '../lib/validate.js';
import { renderDenial, renderFailure, type DenialFormat } from './render.js';

export type SubjectResolver = (ctx: Context) => BillingSubject | null | undefined | Promise<BillingSubject | null | undefined>;

export interface BillingContextOptions {
  /** The BillingCore (required). */
  core: BillingCore;
  /** Resolves who is asking, e.g. `(ctx) => ctx.state.subject` (required). */
  subject: SubjectResolver;
  /** Denial body format: 'openai' (default), 'anthropic', or a function rendering it yourself. */
  format?: DenialFormat;
}

/** ctx.state.billing (DESIGN §2). */
export interface BillingState {
  core: BillingCore;
  subject: BillingSubject;
  mode: BillingMode;
  /** Each check that ran: outcome, limits, usage, reset times. */
  decision: BillingDecision;
  /** Settles this request's cost for this subject. */
  settle(input: Omit<SettleRequest, 'subject'>): Promise<SettlementReceipt>;
  /** The request's pass through the checks (used by the check middlewares). */
  request: BillingRequest;
}

declare module 'koa' {
  interface DefaultState {
    billing?: BillingState;
  }
}

function parseContextOptions(options: unknown, scope: string): Readonly<Required<BillingContextOptions>> {
  return parseOptions<Required<BillingContextOptions>>(scope, options, { core: undefined as never, subject: undefined as never, format: 'openai' }, {
    core: v.object<BillingCore>('check', 'beginRequest', 'settleFor'),
    subject: v.func<SubjectResolver>(),
    format: (value, name) => (typeof value === 'function' ? (value as DenialFormat) : v.oneOf('openai', 'anthropic')(value, name)),
  });
}

/** The request's cancellation, created only when a check needs it (a client that went away). */
function cancellationOf(ctx: Context): () => AbortSignal {
  let controller: AbortController | undefined;
  return () => {
    if (!controller) {
      const created = new AbortController();
      controller = created;
      if (ctx.req.destroyed && !ctx.res.writableFinished) created.abort();
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
  const { core, subject: resolve, format } = parseContextOptions(options, scope);

  return async function billingContext(ctx: Context, next: Next): Promise<void> {
    let state: BillingState;
    try {
      const subject = await resolve(ctx);
      if (!subject) throw new BillingError('INVALID_SUBJECT', { message: 'No billing subject for this request' });
      const normalized = normalizeSubject(subject);
      const request = core.beginRequest(normalized, cancellationOf(ctx));
      state = {
        core,
        subject,
        mode: normalized.mode,
        decision: request.decision,
        request,
        settle: (input) => core.settleFor({ ...input, subject }, normalized),
      };
    } catch (err) {
      if (err instanceof BillingValidationError || err instanceof MoneyError) {
        // The field names are ours and safe to show; the values are not echoed.
        return renderDenial(ctx, new BillingError('INVALID_SUBJECT', { message: `Invalid billing subject: ${err.field}` }), format);
      }
      if (err instanceof BillingError) return renderDenial(ctx, err, format);
      return renderFailure(ctx, err, format);
    }
    ctx.state.billing = state;
    try {
      await next();
    } catch (err) {
      if (!isCheckDenial(err)) throw err;
      renderDenial(ctx, err, format);
    }
  };
}

// Renders a denial (or an unexpected failure) on the Koa context in the chosen format (docs/behaviour.md#errors-and-responses).
import type { Context } from 'koa';
import { BillingError } from '../lib/errors.js';
import { renderBillingError, type ErrorFormat } from '../lib/render.js';

/** A custom renderer: set ctx.status, headers and body from the error. */
export type RenderFunction = (error: BillingError, ctx: Context) => void;
export type DenialFormat = ErrorFormat | RenderFunction;

export function renderDenial(ctx: Context, error: BillingError, format: DenialFormat): void {
  if (typeof format === 'function') {
    format(error, ctx);
    return;
  }
  const rendered = renderBillingError(error, format);
  ctx.status = rendered.status;
  ctx.set(rendered.headers);
  ctx.body = rendered.body;
}

/** A bug or an unexpected failure inside the chain: a plain 503, its cause kept for logs only. */
export function renderFailure(ctx: Context, error: unknown, format: DenialFormat): void {
  renderDenial(ctx, new BillingError('BILLING_SERVICE_ERROR', { cause: error }), format);
}

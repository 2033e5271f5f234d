// The outermost middleware: renders every error in the route's format and never leaks internals to the client.
import type { Context, Middleware, Next } from 'koa';
import { BillingError, BillingValidationError, MoneyError, renderBillingError, systemClock, ThrottledLog } from '../../lib/index.js';
import { GatewayError, gatewayErrors, respondWithError } from './gateway-errors.js';
import { InputError } from './input.js';
import type { Logger } from './logger.js';
import { gatewayState } from './request-state.js';
import { isServiceUnavailable } from './store-errors.js';

/** Errors whose message names a bad input field and is safe to show as a 400. */
function isInputError(err: unknown): err is Error {
  return err instanceof InputError || err instanceof BillingValidationError || err instanceof MoneyError;
}

function methodNotAllowed(ctx: Context): GatewayError {
  const init = {
    status: 405,
    openaiType: 'invalid_request_error',
    code: 'method_not_allowed',
    anthropicType: 'invalid_request_error',
    headers: { allow: ctx.response.get('allow') },
  };
  return new GatewayError(init, `${ctx.method} is not allowed on ${ctx.path}.`);
}

export function errorHandler(logger: Logger, throttled = new ThrottledLog(logger, systemClock)): Middleware {
  return async function errorHandler(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
      // Answers the router leaves without a body (no route, 405 from allowedMethods) get one in the API's format.
      if (ctx.status === 404 && ctx.body == null) throw gatewayErrors.notFound(`No route ${ctx.method} ${ctx.path}.`);
      if (ctx.status === 405 && ctx.body == null) throw methodNotAllowed(ctx);
    } catch (err) {
      const { format } = gatewayState(ctx);
      if (err instanceof GatewayError) return respondWithError(ctx, err, format);
      if (isInputError(err)) return respondWithError(ctx, gatewayErrors.badRequest(err.message), format);
      // A billing error raised outside the chain (e.g. a closed core), or a database that cannot
      // answer: rendered as the chain renders its own, 503 for an outage.
      const billingError = BillingError.is(err) ? err : isServiceUnavailable(err) ? new BillingError('BILLING_SERVICE_ERROR', { cause: err }) : null;
      if (billingError) {
        if (billingError.status >= 500)
          throttled.error('service unavailable', { err, method: ctx.method, path: ctx.path }, 'database unavailable; answered 503');
        const rendered = renderBillingError(billingError, format);
        ctx.status = rendered.status;
        ctx.set(rendered.headers);
        ctx.body = rendered.body;
        return;
      }
      const status = (err as { status?: unknown }).status;
      if (typeof status === 'number' && status >= 400 && status < 500 && (err as { expose?: unknown }).expose) {
        // e.g. the router's 405 Method Not Allowed: a client error with a safe message.
        const headers = (err as { headers?: Record<string, string> }).headers ?? {};
        const init = { status, openaiType: 'invalid_request_error', code: 'invalid_request', anthropicType: 'invalid_request_error', headers };
        return respondWithError(ctx, new GatewayError(init, (err as Error).message), format);
      }
      throttled.error('unhandled', { err, method: ctx.method, path: ctx.path }, 'unhandled error');
      respondWithError(ctx, gatewayErrors.internal(), format);
    }
  };
}

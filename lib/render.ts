// Koa-free rendering of billing errors as OpenAI- or Anthropic-style HTTP responses (docs/behaviour.md#errors-and-responses).
import { BILLING_ERROR_CATALOGUE, BillingError } from './errors.js';

export interface RenderedError {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export type ErrorFormat = 'openai' | 'anthropic';

/** Validates a format option once, at construction; throws a TypeError naming the option. */
export function assertErrorFormat(format: unknown, option = 'format'): ErrorFormat {
  if (format === 'openai' || format === 'anthropic') return format;
  throw formatError(format, option);
}

function formatError(format: unknown, option: string): TypeError {
  return new TypeError(`${option} must be "openai" or "anthropic", got ${typeof format === 'string' ? JSON.stringify(format) : typeof format}`);
}

// Anthropic's error types by status. 529 is Anthropic's own overload status, so a 503 stays api_error.
function anthropicType(status: number): string {
  if (status === 429) return 'rate_limit_error';
  if (status === 403) return 'permission_error';
  if (status === 401) return 'authentication_error';
  if (status === 404) return 'not_found_error';
  if (status >= 400 && status < 500) return 'invalid_request_error';
  return 'api_error';
}

/** The status, headers and JSON body for a BillingError; the cause is never included. */
export function renderBillingError(error: BillingError, format: ErrorFormat): RenderedError {
  const info = BILLING_ERROR_CATALOGUE[error.code];
  // A 5xx message may have been built from an internal failure: clients get the catalogue text.
  const message = error.expose ? error.message : info.message;
  const headers = { ...error.headers };
  if (format === 'openai') {
    return { status: error.status, headers, body: { error: { type: info.type, code: error.code.toLowerCase(), message } } };
  }
  if (format === 'anthropic') {
    return { status: error.status, headers, body: { type: 'error', error: { type: anthropicType(error.status), message } } };
  }
  throw formatError(format, 'format');
}

/**
 * Any error: a BillingError renders as itself; anything else (a bug, a driver error) as
 * BILLING_SERVICE_ERROR 503, without its message, which may hold SQL, hosts or stack traces.
 */
export function renderUnknownError(error: unknown, format: ErrorFormat): RenderedError {
  if (BillingError.is(error)) return renderBillingError(error, format);
  return renderBillingError(new BillingError('BILLING_SERVICE_ERROR'), format);
}

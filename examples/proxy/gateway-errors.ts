// The gateway's own errors (401, 400, 404, 409, 413, 502, 500) rendered in the calling route's API format.
import type { Context } from 'koa';

export type ApiFormat = 'openai' | 'anthropic';

export interface GatewayErrorInit {
  status: number;
  /** OpenAI `error.type`. */
  openaiType: string;
  /** OpenAI `error.code`. */
  code: string;
  /** Anthropic `error.type`. */
  anthropicType: string;
  headers?: Record<string, string>;
}

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly status: number;
  readonly openaiType: string;
  readonly code: string;
  readonly anthropicType: string;
  readonly headers: Record<string, string>;
  /** Koa: the message is safe to show. */
  readonly expose = true;

  constructor(init: GatewayErrorInit, message: string) {
    super(message);
    this.status = init.status;
    this.openaiType = init.openaiType;
    this.code = init.code;
    this.anthropicType = init.anthropicType;
    this.headers = init.headers ?? {};
  }
}

export const gatewayErrors = {
  unauthorized: (message = 'Invalid or missing API key.') =>
    new GatewayError({ status: 401, openaiType: 'invalid_request_error', code: 'invalid_api_key', anthropicType: 'authentication_error' }, message),
  badRequest: (message: string) =>
    new GatewayError({ status: 400, openaiType: 'invalid_request_error', code: 'invalid_request', anthropicType: 'invalid_request_error' }, message),
  unknownModel: (model: unknown) =>
    new GatewayError(
      { status: 400, openaiType: 'invalid_request_error', code: 'model_not_found', anthropicType: 'invalid_request_error' },
      `The model ${JSON.stringify(model)} is not served on this route; see GET /v1/models.`,
    ),
  conflict: (message: string) =>
    new GatewayError({ status: 409, openaiType: 'invalid_request_error', code: 'conflict', anthropicType: 'invalid_request_error' }, message),
  notFound: (message = 'Not found.') =>
    new GatewayError({ status: 404, openaiType: 'invalid_request_error', code: 'not_found', anthropicType: 'not_found_error' }, message),
  tooLarge: (limitBytes: number) =>
    new GatewayError(
      { status: 413, openaiType: 'invalid_request_error', code: 'request_too_large', anthropicType: 'request_too_large' },
      `The request body exceeds the limit of ${limitBytes} bytes.`,
    ),
  upstream: (message = 'The upstream model API failed to answer.') =>
    new GatewayError({ status: 502, openaiType: 'api_error', code: 'upstream_error', anthropicType: 'api_error' }, message),
  internal: () => new GatewayError({ status: 500, openaiType: 'api_error', code: 'internal_error', anthropicType: 'api_error' }, 'Internal gateway error.'),
};

export function errorBody(error: GatewayError, format: ApiFormat): unknown {
  return format === 'anthropic'
    ? { type: 'error', error: { type: error.anthropicType, message: error.message } }
    : { error: { type: error.openaiType, code: error.code, message: error.message } };
}

/** Writes the error as the response (status, headers, body) without throwing through Koa's default handler. */
export function respondWithError(ctx: Context, error: GatewayError, format: ApiFormat): void {
  ctx.status = error.status;
  ctx.set(error.headers);
  ctx.body = errorBody(error, format);
}

// Reads and checks a chat request before billing runs: body size, JSON, a messages array and a model of the price table.
import type { Context, Middleware, Next } from 'koa';
import { gatewayErrors, type ApiFormat } from './gateway-errors.js';
import { BILLABLE_BLOCK_TYPES, contentBlocks, promptTokenBound } from './cost-estimate.js';
import { readJsonRequest } from './json-body.js';
import { findModelPrice } from './prices.js';
import { gatewayState } from './request-state.js';
import { estimatePromptTokens } from './token-estimate.js';

/** OpenAI's limit on `n`, the number of choices one request asks for. */
const MAX_CHOICES = 128;

export interface CompletionRequestOptions {
  format: ApiFormat;
  maxBodyBytes: number;
}

/** The largest token limit a request may name: far above any model's output, far below what breaks the arithmetic. */
export const MAX_OUTPUT_TOKENS = 10_000_000;

/** Mounted after authentication and before billing, so a malformed request never costs RPM or money. */
export function parseCompletionRequest({ format, maxBodyBytes }: CompletionRequestOptions): Middleware {
  return async function parseCompletionRequest(ctx: Context, next: Next): Promise<void> {
    const { value: body, bytes } = await readJsonRequest(ctx.req, maxBodyBytes);
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw gatewayErrors.badRequest('The request body must be a JSON object.');
    const fields = body as Record<string, unknown>;
    if (typeof fields.model !== 'string') throw gatewayErrors.badRequest('"model" is required.');
    if (!Array.isArray(fields.messages) || fields.messages.length === 0) throw gatewayErrors.badRequest('"messages" must be a non-empty array.');
    if (fields.stream !== undefined && typeof fields.stream !== 'boolean') throw gatewayErrors.badRequest('"stream" must be a boolean.');
    for (const cap of ['max_tokens', 'max_completion_tokens'] as const) {
      const value = fields[cap];
      // Bounded, so that the worst-case estimate (tokens × price × multiplier) stays a valid amount.
      if (value !== undefined && !(typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value <= MAX_OUTPUT_TOKENS)) {
        throw gatewayErrors.badRequest(`"${cap}" must be an integer from 1 to ${MAX_OUTPUT_TOKENS}.`);
      }
    }
    if (
      format === 'openai' &&
      fields.n !== undefined &&
      !(typeof fields.n === 'number' && Number.isSafeInteger(fields.n) && fields.n >= 1 && fields.n <= MAX_CHOICES)
    ) {
      throw gatewayErrors.badRequest(`"n" must be an integer from 1 to ${MAX_CHOICES}.`);
    }
    const price = findModelPrice(fields.model);
    if (!price || price.platform !== format) throw gatewayErrors.unknownModel(fields.model);
    const unbillable = contentBlocks(fields).find((block) => !BILLABLE_BLOCK_TYPES.has(block.type));
    if (unbillable)
      throw gatewayErrors.badRequest(
        `Content of type ${JSON.stringify(String(unbillable.type)).slice(0, 40)} is not served by this gateway: its cost cannot be bounded before the call.`,
      );
    gatewayState(ctx).completion = {
      body: fields,
      price,
      stream: fields.stream === true,
      promptEstimate: estimatePromptTokens(fields),
      promptBound: promptTokenBound(fields, bytes, price),
    };
    await next();
  };
}

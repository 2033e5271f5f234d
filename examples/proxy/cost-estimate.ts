// The reservation estimate of a chat request (issue 9): what it would cost if the upstream used every
// output token it may — prompt tokens estimated from the body plus max_tokens, at the model's prices.
import { formatUsd } from '../../lib/index.js';
import { computeCostUnits } from './prices.js';
import type { CompletionRequest } from './request-state.js';

/** Output tokens assumed when the request sets no max_tokens (OpenAI allows that). */
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

/** The request's output cap: `max_completion_tokens`, else `max_tokens`, else the default. */
export function maxOutputTokens(body: Record<string, unknown>): number {
  const cap = body.max_completion_tokens ?? body.max_tokens;
  return typeof cap === 'number' && Number.isSafeInteger(cap) && cap > 0 ? cap : DEFAULT_MAX_OUTPUT_TOKENS;
}

/** The estimate as a decimal USD string, exact like the final charge (same prices, same multiplier). */
export function estimateCompletionCost(completion: CompletionRequest, multiplier: string): string {
  const usage = { inputTokens: completion.promptEstimate, outputTokens: maxOutputTokens(completion.body) };
  return formatUsd(computeCostUnits(completion.price.model, usage, multiplier));
}

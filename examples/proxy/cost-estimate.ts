// The reservation estimate of a chat request: the most it could cost, so that concurrent requests
// cannot together spend more than the caller has (docs/estimates.md). It must bound what the
// upstream may do, not what the request seems to ask for: every output limit the upstream honours,
// every choice, and a prompt count no tokenizer can exceed.
import { formatUsd } from '../../lib/index.js';
import { computeCostUnits, type ModelPrice } from './prices.js';
import type { CompletionRequest } from './request-state.js';

/** The fields either API reads as an output limit; the upstream may honour any of them, so the largest counts. */
export const OUTPUT_LIMIT_FIELDS = ['max_tokens', 'max_completion_tokens'] as const;

/** The most tokens one image in a prompt costs on the table's models (a URL's bytes say nothing about it). */
export const IMAGE_TOKEN_BOUND = 2_500;

const IMAGE_BLOCK_TYPES: ReadonlySet<unknown> = new Set(['image', 'image_url', 'input_image']);

/**
 * Output tokens the upstream could produce: the largest limit field (at most the model's maximum,
 * which is also what a request without one reserves), times `n` choices on the OpenAI route.
 * parseCompletionRequest has validated the fields.
 */
export function outputTokenBound(body: Record<string, unknown>, price: ModelPrice): number {
  const limits = OUTPUT_LIMIT_FIELDS.map((field) => body[field]).filter((value): value is number => typeof value === 'number');
  const perChoice = limits.length === 0 ? price.maxOutputTokens : Math.min(Math.max(...limits), price.maxOutputTokens);
  const choices = price.platform === 'openai' && typeof body.n === 'number' ? body.n : 1;
  return perChoice * choices;
}

/**
 * Prompt tokens no tokenizer can exceed: byte-level tokenizers give at least one byte per token, so
 * the body's size bounds its text, role markers included; images are counted apart.
 */
export function promptTokenBound(body: unknown, bodyBytes: number): number {
  return Math.max(1, bodyBytes) + IMAGE_TOKEN_BOUND * countImageBlocks(body);
}

/** Image blocks anywhere in the body (tool results nest them), walked without recursion. */
function countImageBlocks(body: unknown): number {
  let images = 0;
  const pending: unknown[] = [body];
  while (pending.length > 0) {
    const value = pending.pop();
    if (value === null || typeof value !== 'object') continue;
    if (!Array.isArray(value) && IMAGE_BLOCK_TYPES.has((value as { type?: unknown }).type)) images++;
    for (const child of Array.isArray(value) ? value : Object.values(value)) pending.push(child);
  }
  return images;
}

/** The estimate as a decimal USD string, exact like the final charge (same prices, same multiplier). */
export function estimateCompletionCost(completion: CompletionRequest, multiplier: string): string {
  const usage = { inputTokens: completion.promptBound, outputTokens: outputTokenBound(completion.body, completion.price) };
  return formatUsd(computeCostUnits(completion.price.model, usage, multiplier));
}

// The reservation estimate of a chat request: the most it could cost, so that concurrent requests
// cannot together spend more than the caller has (docs/estimates.md). It must bound what the
// upstream may do, not what the request seems to ask for: every output limit the upstream honours,
// every choice, and a prompt count no tokenizer can exceed.
import { formatUsd } from '../../lib/index.js';
import { computeCostUnits, type ModelPrice } from './prices.js';
import type { CompletionRequest } from './request-state.js';

/** The fields either API reads as an output limit; the upstream may honour any of them, so the largest counts. */
export const OUTPUT_LIMIT_FIELDS = ['max_tokens', 'max_completion_tokens'] as const;

const IMAGE_BLOCK_TYPES: ReadonlySet<unknown> = new Set(['image', 'image_url', 'input_image']);

/**
 * Content blocks whose cost the estimate can bound: text of any kind (its bytes bound its tokens) and
 * images (a fixed bound per model). Anything else — documents, files, audio, kinds added to the APIs
 * later — could cost any number of tokens from a few bytes, so the gateway refuses it.
 */
export const BILLABLE_BLOCK_TYPES: ReadonlySet<unknown> = new Set([
  'text',
  'input_text',
  'output_text',
  'tool_use',
  'tool_result',
  'thinking',
  'redacted_thinking',
  ...IMAGE_BLOCK_TYPES,
]);

/** Every content block of the messages, tool results' nested blocks included, walked without recursion. */
export function contentBlocks(body: Record<string, unknown>): Record<string, unknown>[] {
  const blocks: Record<string, unknown>[] = [];
  const pending: unknown[] = Array.isArray(body.messages) ? body.messages.map((m) => (m as { content?: unknown } | null)?.content) : [];
  while (pending.length > 0) {
    const content = pending.pop();
    if (!Array.isArray(content)) continue;
    for (const block of content) {
      if (block === null || typeof block !== 'object') continue;
      blocks.push(block as Record<string, unknown>);
      pending.push((block as { content?: unknown }).content);
    }
  }
  return blocks;
}

/**
 * Output tokens the upstream could produce: the largest limit field (at most the model's maximum,
 * which is also what a request without one reserves), times `n` choices on the OpenAI route.
 * parseCompletionRequest has validated the fields.
 */
export function outputTokenBound(body: Record<string, unknown>, price: ModelPrice): number {
  const limits = OUTPUT_LIMIT_FIELDS.map((field) => body[field]).filter((value): value is number => typeof value === 'number');
  const perChoice = limits.length === 0 ? price.maxOutputTokens : Math.min(Math.max(...limits), price.maxOutputTokens);
  return perChoice * choiceCount(body, price);
}

/** The answers one request asks for: `n` on the OpenAI route (validated by parseCompletionRequest), else one. */
export function choiceCount(body: Record<string, unknown>, price: ModelPrice): number {
  return price.platform === 'openai' && typeof body.n === 'number' ? body.n : 1;
}

/**
 * Prompt tokens no tokenizer can exceed: byte-level tokenizers give at least one byte per token, so
 * the body's size bounds its text, role markers included; each image adds the model's bound.
 */
export function promptTokenBound(body: Record<string, unknown>, bodyBytes: number, price: ModelPrice): number {
  const images = contentBlocks(body).filter((block) => IMAGE_BLOCK_TYPES.has(block.type)).length;
  return Math.max(1, bodyBytes) + price.imageTokenBound * images;
}

/**
 * The estimate as a decimal USD string, exact like the final charge (same prices, same multiplier).
 * A metered stream (docs/stream-metering.md) reserves the prompt and a first slice of output, never
 * more than the worst case; its hold grows as it runs.
 */
export function estimateCompletionCost(completion: CompletionRequest, multiplier: string, meteredSliceTokens: number | null = null): string {
  const bound = outputTokenBound(completion.body, completion.price);
  const outputTokens = meteredSliceTokens === null ? bound : Math.min(bound, meteredSliceTokens);
  return formatUsd(computeCostUnits(completion.price.model, { inputTokens: completion.promptBound, outputTokens }, multiplier));
}

/** What `tokens` output tokens of the request's model cost: the unit a metered stream's hold grows by. */
export function sliceCostUnits(completion: CompletionRequest, multiplier: string, tokens: number): bigint {
  return computeCostUnits(completion.price.model, { inputTokens: 0, outputTokens: tokens }, multiplier);
}

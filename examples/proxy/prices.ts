// The model price table and the exact cost of a request: tokens × price × the group's rate multiplier.
import { multiplyUsd, parseUsd } from '../../lib/index.js';

export type Platform = 'openai' | 'anthropic';

export interface ModelPrice {
  model: string;
  /** The route that serves it: /v1/chat/completions (openai) or /v1/messages (anthropic). */
  platform: Platform;
  /** USD per 1,000,000 input (prompt) tokens, as an exact decimal string. */
  inputUsdPerMTok: string;
  /** USD per 1,000,000 output (completion) tokens, as an exact decimal string. */
  outputUsdPerMTok: string;
  /** The most output tokens the model produces for one choice: what a request without a bound reserves. */
  maxOutputTokens: number;
  /**
   * The most input tokens one image can cost on this model (the provider's image pricing at its
   * largest size and detail, rounded up): an image URL's few bytes say nothing about it.
   */
  imageTokenBound: number;
  ownedBy: string;
}

/** The models this gateway serves; edit to match your upstream. Anything else is refused with 400. */
export const PRICE_TABLE: readonly ModelPrice[] = Object.freeze([
  {
    model: 'gpt-4o-mini',
    platform: 'openai',
    inputUsdPerMTok: '0.15',
    outputUsdPerMTok: '0.60',
    maxOutputTokens: 16_384,
    imageTokenBound: 48_200,
    ownedBy: 'openai',
  },
  {
    model: 'gpt-4o',
    platform: 'openai',
    inputUsdPerMTok: '2.50',
    outputUsdPerMTok: '10.00',
    maxOutputTokens: 16_384,
    imageTokenBound: 1_500,
    ownedBy: 'openai',
  },
  {
    model: 'gpt-4.1-nano',
    platform: 'openai',
    inputUsdPerMTok: '0.10',
    outputUsdPerMTok: '0.40',
    maxOutputTokens: 32_768,
    imageTokenBound: 3_800,
    ownedBy: 'openai',
  },
  {
    model: 'claude-3-5-haiku-latest',
    platform: 'anthropic',
    inputUsdPerMTok: '0.80',
    outputUsdPerMTok: '4.00',
    maxOutputTokens: 8_192,
    imageTokenBound: 1_600,
    ownedBy: 'anthropic',
  },
  {
    model: 'claude-sonnet-4-0',
    platform: 'anthropic',
    inputUsdPerMTok: '3.00',
    outputUsdPerMTok: '15.00',
    maxOutputTokens: 64_000,
    imageTokenBound: 1_600,
    ownedBy: 'anthropic',
  },
] satisfies ModelPrice[]);

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
}

interface ParsedPrice {
  price: ModelPrice;
  /** 1e-8 USD units per 1M tokens. */
  inputUnits: bigint;
  outputUnits: bigint;
}

/** Builds the lookup once; a malformed price fails at start, naming the model. */
export function indexPrices(table: readonly ModelPrice[]): ReadonlyMap<string, ParsedPrice> {
  const index = new Map<string, ParsedPrice>();
  for (const price of table) {
    for (const field of ['maxOutputTokens', 'imageTokenBound'] as const) {
      if (!Number.isSafeInteger(price[field]) || price[field] < 1)
        throw new RangeError(`${field} of ${price.model} must be a positive integer, got ${price[field]}`);
    }
    index.set(price.model, {
      price,
      inputUnits: parseUsd(price.inputUsdPerMTok, `price of ${price.model} (input)`),
      outputUnits: parseUsd(price.outputUsdPerMTok, `price of ${price.model} (output)`),
    });
  }
  return index;
}

const PRICES = indexPrices(PRICE_TABLE);

export function findModelPrice(model: unknown): ModelPrice | undefined {
  return typeof model === 'string' ? PRICES.get(model)?.price : undefined;
}

/** A group's rate multiplier: a plain decimal ≥ 0 with at most 12 decimals, so the product below stays exact. */
export function checkMultiplier(value: unknown, field = 'rateMultiplier'): string {
  if (typeof value === 'string' && /^\d{1,6}(\.\d{1,12})?$/.test(value)) return value;
  throw new RangeError(`${field} must be a decimal such as "1" or "0.85" (at most 12 decimals), got ${JSON.stringify(value)}`);
}

function tokens(value: number, field: string): bigint {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${field} must be a non-negative integer, got ${value}`);
  return BigInt(value);
}

/**
 * Cost in 1e-8 USD units: (in × pIn + out × pOut) / 1e6 × multiplier, computed exactly and
 * rounded once, half away from zero, at the 8th decimal (so 0.000000005 USD rounds up to 1 unit).
 */
export function computeCostUnits(model: string, usage: TokenUsage, multiplier: string): bigint {
  const parsed = PRICES.get(model);
  if (!parsed) throw new RangeError(`model ${JSON.stringify(model)} is not in the price table`);
  // "units × tokens": one million times the cost in units, still exact.
  const scaled = tokens(usage.inputTokens, 'inputTokens') * parsed.inputUnits + tokens(usage.outputTokens, 'outputTokens') * parsed.outputUnits;
  return multiplyUsd(scaled, `${checkMultiplier(multiplier)}e-6`, 'rateMultiplier');
}

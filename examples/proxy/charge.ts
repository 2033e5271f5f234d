// Turns what the upstream reported into a settled charge: tokens, exact cost, request id, one settle() call.
import { randomUUID } from 'node:crypto';
import { formatUsd } from '../../lib/index.js';
import type { Logger } from './logger.js';
import { computeCostUnits, type TokenUsage } from './prices.js';
import { estimateTokensFromChars } from './token-estimate.js';
import type { UsageSnapshot } from './usage-parser.js';

/** The part of ctx.state.billing a charge needs. */
export interface Settler {
  settle(input: {
    requestId: string;
    costUsd: string;
    model?: string;
    inputTokens?: number;
    outputTokens?: number;
  }): Promise<{ duplicate: boolean; costUsd: string }>;
}

export interface ChargeInput {
  billing: Settler;
  model: string;
  /** The group's rate multiplier. */
  multiplier: string;
  snapshot: UsageSnapshot;
  /** Prompt tokens estimated from the request, used when the upstream reported none. */
  promptEstimate: number;
  /** False when the response was cut short (client gone, upstream failed mid-stream). */
  complete: boolean;
  /** Ids for the log line. */
  userId: string;
  keyId: string;
}

/**
 * The tokens to charge. A complete response: what the upstream reported, estimated only where it
 * reported nothing. A cut-short one: at least the prompt, and at least the text already streamed
 * (an Anthropic stream reports output only at its end; an OpenAI one reports nothing until then).
 */
export function tokensToCharge(snapshot: UsageSnapshot, promptEstimate: number, complete: boolean): TokenUsage & { estimated: boolean } {
  const streamedOutput = estimateTokensFromChars(snapshot.outputChars);
  const inputTokens = snapshot.inputTokens ?? promptEstimate;
  const outputTokens = complete ? (snapshot.outputTokens ?? streamedOutput) : Math.max(snapshot.outputTokens ?? 0, streamedOutput);
  const estimated = snapshot.inputTokens === null || (complete ? snapshot.outputTokens === null : outputTokens !== snapshot.outputTokens);
  return { inputTokens, outputTokens, estimated };
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** The upstream's response id when it is a usable idempotency key, else a generated one. */
export function requestIdFor(snapshot: UsageSnapshot): string {
  const id = snapshot.responseId;
  return id !== null && REQUEST_ID.test(id) ? id : `gw-${randomUUID()}`;
}

/** Settles the request; never throws (the client already has its answer), failures are logged. */
export async function charge(input: ChargeInput, logger: Logger): Promise<void> {
  const { inputTokens, outputTokens, estimated } = tokensToCharge(input.snapshot, input.promptEstimate, input.complete);
  const requestId = requestIdFor(input.snapshot);
  const fields = { requestId, userId: input.userId, keyId: input.keyId, model: input.model, inputTokens, outputTokens, estimated, complete: input.complete };
  try {
    const costUsd = formatUsd(computeCostUnits(input.model, { inputTokens, outputTokens }, input.multiplier));
    const receipt = await input.billing.settle({ requestId, costUsd, model: input.model, inputTokens, outputTokens });
    logger.info({ ...fields, costUsd: receipt.costUsd, duplicate: receipt.duplicate }, 'request settled');
  } catch (err) {
    logger.error({ ...fields, err }, 'settlement failed');
  }
}

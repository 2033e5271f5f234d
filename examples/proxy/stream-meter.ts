// Live metering of a streamed answer (docs/stream-metering.md): the hold grows by a slice ahead of
// what the stream has cost so far, and a stream the caller cannot pay for more of is ended cleanly
// with a final event in its API's own format.
import { parseUsd, type HoldExtensionResult } from '../../lib/index.js';
import type { ApiFormat } from './gateway-errors.js';
import type { UsageSnapshot } from './usage-parser.js';

/** The stop reason of a stream ended because the caller's budget had no room for more. */
export const BUDGET_STOP_REASON = 'budget_exceeded';
/** How long after a failed extension (the cache did not answer) the next one is tried. */
const CACHE_RETRY_MS = 1000;

export interface StreamMeterOptions {
  /** What the request holds when its stream starts (its reservation), in 10⁻⁸ USD units. */
  heldUnits: bigint;
  /** What one slice of output costs: the amount each extension adds. */
  sliceUnits: bigint;
  /** What the stream has cost so far, from what was read of it. */
  costOf(snapshot: UsageSnapshot): bigint;
  /** Grows the hold (ctx.state.billing.extendHold). */
  extend(units: bigint): Promise<HoldExtensionResult>;
}

/**
 * Keeps at least half a slice of the hold ahead of the cost: when less is left, the hold grows by
 * one slice (one cache round trip), so a stream pays for its next slice before it streams it.
 */
export class StreamMeter {
  #held: bigint;
  #refused: HoldExtensionResult | null = null;
  #lastFailure: HoldExtensionResult | null = null;
  #retryAtMs = 0;
  #extensions = 0;
  readonly #options: StreamMeterOptions;

  constructor(options: StreamMeterOptions) {
    if (options.sliceUnits <= 0n) throw new RangeError('a metering slice must cost more than 0');
    this.#options = options;
    this.#held = options.heldUnits;
  }

  /**
   * Whether what was read so far (`snapshot`) is paid for, growing the hold first where it runs low.
   * A refusal (or a hold that cannot grow at all) is final; a cache failure is tried again on a later
   * chunk, at most once a second, so that a blip does not end the stream and an outage does not
   * wait on the cache at every chunk.
   */
  async allows(snapshot: UsageSnapshot): Promise<boolean> {
    const { costOf, sliceUnits, extend } = this.#options;
    const cost = costOf(snapshot);
    while (this.#refused === null && this.#held - cost < sliceUnits / 2n && Date.now() >= this.#retryAtMs) {
      const result = await extend(sliceUnits);
      if (result.extended) {
        this.#extensions++;
        this.#held = parseUsd(result.heldUsd);
      } else if (result.reason === 'unavailable' && result.detail === 'cache_error') {
        this.#lastFailure = result;
        this.#retryAtMs = Date.now() + CACHE_RETRY_MS;
      } else {
        this.#refused = result;
      }
    }
    return cost <= this.#held;
  }

  get heldUnits(): bigint {
    return this.#held;
  }

  get extensions(): number {
    return this.#extensions;
  }

  /** Why the hold stopped growing: a final refusal, else the last cache failure (null while it grows). */
  get refusal(): HoldExtensionResult | null {
    return this.#refused ?? this.#lastFailure;
  }
}

/**
 * The events that end a stream the budget cut short, in the route's format, as clients of each API
 * handle an ordinary end: OpenAI, a last chunk whose choices finish with BUDGET_STOP_REASON, then
 * `[DONE]`; Anthropic, the open content block closed, a `message_delta` with that stop reason and
 * the output delivered, then `message_stop`. Both official SDKs pass an unknown reason through.
 */
export function budgetEndEvents(
  format: ApiFormat,
  end: {
    responseId: string | null;
    model: string;
    choices: number;
    openBlock: number | null;
    messageStarted: boolean;
    inputTokens: number;
    outputTokens: number;
  },
): string {
  if (format === 'openai') {
    const chunk = {
      id: end.responseId ?? 'chatcmpl-budget',
      object: 'chat.completion.chunk',
      created: Math.floor(Date.now() / 1000),
      model: end.model,
      choices: Array.from({ length: end.choices }, (_, index) => ({ index, delta: {}, finish_reason: BUDGET_STOP_REASON })),
    };
    return `data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`;
  }
  const event = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  // A client that got nothing yet still gets a message to end (the SDKs refuse events before message_start).
  const start = end.messageStarted
    ? ''
    : event('message_start', {
        message: {
          id: end.responseId ?? 'msg_budget',
          type: 'message',
          role: 'assistant',
          model: end.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: end.inputTokens, output_tokens: 0 },
        },
      });
  return (
    start +
    (end.openBlock === null ? '' : event('content_block_stop', { index: end.openBlock })) +
    event('message_delta', { delta: { stop_reason: BUDGET_STOP_REASON, stop_sequence: null }, usage: { output_tokens: end.outputTokens } }) +
    event('message_stop', {})
  );
}

// Relays an upstream SSE stream to the client chunk by chunk (never buffering the whole response),
// reading usage as it passes, and reports how the stream ended so the request can be settled.
import { PassThrough } from 'node:stream';
import type { Context } from 'koa';
import { formatUsd } from '../../lib/index.js';
import type { ApiFormat } from './gateway-errors.js';
import type { Logger } from './logger.js';
import { SseEventSplitter } from './sse-events.js';
import { budgetEndEvents, type StreamMeter } from './stream-meter.js';
import { SseUsageParser, type UsageSnapshot } from './usage-parser.js';

export interface RelayOptions {
  format: ApiFormat;
  /** Aborted when the client goes away; aborts the upstream fetch too. */
  signal: AbortSignal;
  logger: Logger;
  /**
   * Called once with the usage seen. complete = the upstream finished and the client is still
   * there; the client's stream ends only after this resolves, so its next request sees the charge.
   */
  finish(snapshot: UsageSnapshot, complete: boolean): Promise<void>;
  /**
   * Live metering (docs/stream-metering.md): events are relayed whole, each chunk's only once its
   * cost is held; when no more can be held, the stream ends with the budget's final event and
   * finish() gets what was delivered.
   */
  metering?: {
    meter: StreamMeter;
    model: string;
    choices: number;
    /** Output tokens to report in the final event: what the charge counts for what was delivered. */
    outputTokensOf(snapshot: UsageSnapshot): number;
    /** Counts a stream ended early: a limit refused its hold, or the hold could not grow (cache failure, hold in the store). */
    endedByBudget(cause: 'refused' | 'unavailable'): void;
  };
}

/** Resolves when the writable can take more, or is gone. */
function drained(out: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.once('drain', done);
    out.once('close', done);
  });
}

/** Starts the relay: sets the response up and returns the pump, which resolves once finish() has run and the stream is ended. */
export function relaySse(ctx: Context, upstream: Response, options: RelayOptions): Promise<void> {
  const out = new PassThrough();
  ctx.status = 200;
  ctx.set({ 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
  ctx.type = 'text/event-stream; charset=utf-8';
  ctx.body = out;
  return pump(upstream, out, options);
}

async function pump(upstream: Response, out: PassThrough, options: RelayOptions): Promise<void> {
  if (options.metering) return pumpMetered(upstream, out, options, options.metering);
  const { format, signal } = options;
  const parser = new SseUsageParser(format);
  let failure: unknown = null;
  try {
    if (!upstream.body) throw new Error('the upstream sent no body');
    for await (const chunk of upstream.body as AsyncIterable<Uint8Array>) {
      // Usage first: the upstream produced these tokens whether or not the client still reads them.
      parser.push(chunk);
      if (signal.aborted || out.destroyed) break;
      if (!out.write(chunk)) await drained(out);
    }
  } catch (err) {
    if (!signal.aborted) failure = err;
  }
  parser.end();
  await settleAndEnd(out, options, parser.snapshot, failure);
}

/**
 * The metered relay (docs/stream-metering.md): whole events only, each chunk's relayed once its cost
 * is held. An answer the upstream already finished is paid for as it is (its last chunks carry the
 * usage). When no more can be held, the client gets the budget's final event and finish() gets the
 * usage of what it was sent — also when it left while the hold was asked to grow.
 */
async function pumpMetered(upstream: Response, out: PassThrough, options: RelayOptions, metering: NonNullable<RelayOptions['metering']>): Promise<void> {
  const { format, signal, logger, finish } = options;
  const parser = new SseUsageParser(format);
  const splitter = new SseEventSplitter();
  const paidFor = async (snapshot: UsageSnapshot) => splitter.finishedChoices >= metering.choices || (await metering.meter.allows(snapshot));
  let failure: unknown = null;
  // Set when the budget ended the stream: the usage of what the client was sent.
  let delivered: UsageSnapshot | null = null;
  try {
    if (!upstream.body) throw new Error('the upstream sent no body');
    // Leaving the loop early cancels the body, which aborts the upstream call.
    for await (const chunk of upstream.body as AsyncIterable<Uint8Array>) {
      const before = { ...parser.snapshot };
      // The parser reads the splitter's whole events: the bytes are decoded and split once.
      const events = splitter.push(chunk);
      parser.pushText(events);
      if (signal.aborted || out.destroyed) break;
      if (!(await paidFor(parser.snapshot))) {
        delivered = before;
        break;
      }
      if (signal.aborted || out.destroyed) break;
      if (events === '') continue;
      splitter.delivered(events);
      if (!out.write(events)) await drained(out);
    }
    if (delivered === null && !signal.aborted && !out.destroyed) {
      // A last event without a blank line after it is metered like the others.
      const before = { ...parser.snapshot };
      const rest = splitter.end();
      parser.pushText(rest);
      parser.end();
      if (rest !== '' && !(await paidFor(parser.snapshot))) delivered = before;
      else if (rest !== '' && !out.destroyed) out.write(rest);
    }
  } catch (err) {
    if (!signal.aborted) failure = err;
  }
  if (delivered === null) return settleAndEnd(out, options, parser.snapshot, failure);
  const refusal = metering.meter.refusal;
  metering.endedByBudget(refusal?.extended === false && refusal.reason === 'refused' ? 'refused' : 'unavailable');
  logger.info(
    { heldUsd: formatUsd(metering.meter.heldUnits), extensions: metering.meter.extensions, refusal, clientGone: out.destroyed },
    'stream ended by its budget',
  );
  if (!out.destroyed) {
    out.write(
      budgetEndEvents(format, {
        responseId: delivered.responseId,
        model: metering.model,
        choices: metering.choices,
        openBlock: splitter.openBlock,
        messageStarted: splitter.messageStarted,
        inputTokens: delivered.inputTokens ?? 0,
        outputTokens: metering.outputTokensOf(delivered),
      }),
    );
  }
  await finish(delivered, false);
  if (!out.destroyed) out.end();
}

/** Settles what was read and ends the response: ended when complete, destroyed when cut short. */
async function settleAndEnd(out: PassThrough, { signal, logger, finish }: RelayOptions, snapshot: UsageSnapshot, failure: unknown): Promise<void> {
  const complete = failure === null && !signal.aborted && !out.destroyed;
  if (failure !== null) logger.warn({ err: failure }, 'upstream stream failed mid-response');
  await finish(snapshot, complete);
  // A stream cut by the upstream is destroyed, not ended, so the client sees it was incomplete.
  if (complete) out.end();
  else if (!out.destroyed) out.destroy(failure instanceof Error ? failure : undefined);
}

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
    endedByBudget(): void;
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

async function pump(upstream: Response, out: PassThrough, { format, signal, logger, finish, metering }: RelayOptions): Promise<void> {
  const parser = new SseUsageParser(format);
  const splitter = metering ? new SseEventSplitter() : null;
  let failure: unknown = null;
  // Set when the budget ended the stream: the usage of what the client was sent.
  let delivered: UsageSnapshot | null = null;
  try {
    if (!upstream.body) throw new Error('the upstream sent no body');
    // Leaving the loop early cancels the body, which aborts the upstream call.
    for await (const chunk of upstream.body as AsyncIterable<Uint8Array>) {
      const before = metering ? { ...parser.snapshot } : null;
      // Usage first: the upstream produced these tokens whether or not the client still reads them.
      parser.push(chunk);
      if (signal.aborted || out.destroyed) break;
      if (!metering || !splitter) {
        if (!out.write(chunk)) await drained(out);
        continue;
      }
      const events = splitter.push(chunk);
      if (!(await metering.meter.allows(parser.snapshot))) {
        delivered = before;
        break;
      }
      if (signal.aborted || out.destroyed) break;
      if (events === '') continue;
      splitter.delivered(events);
      if (!out.write(events)) await drained(out);
    }
  } catch (err) {
    if (!signal.aborted) failure = err;
  }
  if (delivered && metering && splitter && !out.destroyed) {
    metering.endedByBudget();
    const outputTokens = metering.outputTokensOf(delivered);
    out.write(
      budgetEndEvents(format, {
        responseId: delivered.responseId,
        model: metering.model,
        choices: metering.choices,
        openBlock: splitter.openBlock,
        outputTokens,
      }),
    );
    logger.info(
      { heldUsd: formatUsd(metering.meter.heldUnits), extensions: metering.meter.extensions, refusal: metering.meter.refusal },
      'stream ended by its budget',
    );
    await finish(delivered, false);
    out.end();
    return;
  }
  parser.end();
  const rest = splitter?.end() ?? '';
  if (rest !== '' && failure === null && !signal.aborted && !out.destroyed) out.write(rest);
  const complete = failure === null && !signal.aborted && !out.destroyed;
  if (failure !== null) logger.warn({ err: failure }, 'upstream stream failed mid-response');
  await finish(parser.snapshot, complete);
  // A stream cut by the upstream is destroyed, not ended, so the client sees it was incomplete.
  if (complete) out.end();
  else if (!out.destroyed) out.destroy(failure instanceof Error ? failure : undefined);
}

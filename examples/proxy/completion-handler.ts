// The chat route's final handler: forward upstream, answer (JSON or relayed SSE), and settle the cost.
import type { Context, Middleware } from 'koa';
import { charge, tokensToCharge, type Settler } from './charge.js';
import type { MeteringSettings } from './config.js';
import { choiceCount, estimateCompletionCost, sliceCostUnits } from './cost-estimate.js';
import { gatewayErrors, type ApiFormat } from './gateway-errors.js';
import type { InFlightTracker } from './in-flight.js';
import type { Logger } from './logger.js';
import { gatewayState, principalOf } from './request-state.js';
import { formatUsd, parseUsd } from '../../lib/index.js';
import { computeCostUnits } from './prices.js';
import type { Principal } from './gateway-repo.js';
import type { CompletionRequest } from './request-state.js';
import { relaySse, type RelayOptions } from './sse-relay.js';
import { StreamMeter } from './stream-meter.js';
import { callUpstream, type UpstreamTarget } from './upstream.js';
import { emptyUsage, usageFromJson, type UsageSnapshot } from './usage-parser.js';

export interface CompletionHandlerOptions {
  format: ApiFormat;
  upstream: UpstreamTarget;
  logger: Logger;
  /** Relays are tracked so that shutdown waits for them... */
  tracker: InFlightTracker;
  /** ...and the charges, which shutdown waits for once the billing core has a deadline for them. */
  settlements: InFlightTracker;
  /** How long a finished response waits for its settlement before it is sent or ended (ms). */
  settleWaitMs: number;
  /** Live metering of streams (docs/stream-metering.md). */
  metering: MeteringSettings;
  /** A stream was ended because its hold could not grow (the metric). */
  onEndedByBudget(cause: 'refused' | 'unavailable'): void;
}

/** What a metered relay needs, or undefined when the stream is not metered (metering off, or no hold to grow). */
function meteringFor(
  ctx: Context,
  completion: CompletionRequest,
  principal: Principal,
  settings: MeteringSettings,
  onEndedByBudget: (cause: 'refused' | 'unavailable') => void,
): RelayOptions['metering'] {
  const billing = ctx.state.billing;
  if (!settings.enabled || !billing) return undefined;
  // Only a request that holds its estimate has a hold to grow (no limit to hold against, no cache, simple mode: none).
  const held = billing.decision.checks.some((c) => c.check === 'reservation' && (c.outcome === 'allowed' || c.outcome === 'shadow_deny'));
  if (!held) return undefined;
  const multiplier = principal.group?.rateMultiplier ?? '1';
  const sliceUnits = sliceCostUnits(completion, multiplier, settings.sliceTokens);
  if (sliceUnits <= 0n) return undefined;
  const tokensOf = (snapshot: UsageSnapshot) => tokensToCharge(snapshot, completion.promptEstimate, false);
  const meter = new StreamMeter({
    heldUnits: parseUsd(estimateCompletionCost(completion, multiplier, settings.sliceTokens)),
    sliceUnits,
    costOf: (snapshot) => computeCostUnits(completion.price.model, tokensOf(snapshot), multiplier),
    extend: (units) => billing.extendHold(formatUsd(units)),
  });
  return {
    meter,
    model: completion.price.model,
    choices: choiceCount(completion.body, completion.price),
    outputTokensOf: (snapshot) => tokensOf(snapshot).outputTokens,
    endedByBudget: onEndedByBudget,
  };
}

/** Upstream statuses that are the caller's own doing (or the upstream's rate limit) and pass through as they are. */
const PASS_THROUGH = new Set([400, 404, 413, 422, 429]);

/** Waits for the promise, but no longer than ms; the promise itself keeps running. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise,
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

async function relayUpstreamError(ctx: Context, response: Response, logger: Logger): Promise<void> {
  const text = await response.text().catch(() => '');
  logger.warn({ upstreamStatus: response.status }, 'upstream answered with an error');
  if (!PASS_THROUGH.has(response.status)) throw gatewayErrors.upstream(`The upstream model API answered ${response.status}.`);
  ctx.status = response.status;
  const retryAfter = response.headers.get('retry-after');
  if (retryAfter) ctx.set('retry-after', retryAfter);
  ctx.type = response.headers.get('content-type') ?? 'application/json';
  ctx.body = text;
}

export function completionHandler({
  format,
  upstream,
  logger,
  tracker,
  settlements,
  settleWaitMs,
  metering,
  onEndedByBudget,
}: CompletionHandlerOptions): Middleware {
  return async function completionHandler(ctx: Context): Promise<void> {
    const { completion } = gatewayState(ctx);
    const principal = principalOf(ctx);
    const billing: Settler | undefined = ctx.state.billing;
    if (!completion || !billing) throw new Error('completionHandler needs parseCompletionRequest and billingEligibility before it');

    const settle = (snapshot: UsageSnapshot, complete: boolean): Promise<void> =>
      settlements.track(
        charge(
          {
            billing,
            model: completion.price.model,
            multiplier: principal.group?.rateMultiplier ?? '1',
            snapshot,
            promptEstimate: completion.promptEstimate,
            complete,
            userId: principal.user.id,
            keyId: principal.key.id,
          },
          logger,
        ),
      );

    // A client that left during the checks gets no upstream call (and no charge).
    if (ctx.res.closed || ctx.res.destroyed) return;
    // The client going away aborts the upstream call: nobody is left to read what it would produce.
    const controller = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) controller.abort();
    });

    let response: Response;
    let isSse = false;
    let body = '';
    try {
      response = await callUpstream(upstream, format, completion.body, ctx.req.headers, controller.signal);
      isSse = completion.stream && (response.headers.get('content-type') ?? '').includes('text/event-stream');
      if (response.ok && !isSse) body = await response.text();
      if (response.ok && !isSse && completion.stream && metering.enabled) {
        // Held for its first slice only, it is still charged what the upstream reports (it was produced).
        logger.warn({ model: completion.price.model }, 'the upstream answered a streamed request with JSON: charged in full, beyond the slice it held');
      }
    } catch (err) {
      if (controller.signal.aborted) {
        // The upstream had the request and bills for its prompt; charge that much, then stop.
        void settle(emptyUsage(), false);
        return;
      }
      logger.warn({ err }, 'upstream unreachable');
      throw gatewayErrors.upstream();
    }
    if (!response.ok) return relayUpstreamError(ctx, response, logger);

    if (isSse) {
      const finish = (snapshot: UsageSnapshot, complete: boolean) => waitAtMost(settle(snapshot, complete), settleWaitMs);
      const meter = meteringFor(ctx, completion, principal, metering, onEndedByBudget);
      void tracker.track(relaySse(ctx, response, { format, signal: controller.signal, logger, finish, metering: meter }));
      return;
    }

    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      logger.warn({ upstreamStatus: response.status }, 'upstream sent a body that is not JSON');
      throw gatewayErrors.upstream('The upstream model API sent an unreadable answer.');
    }
    await waitAtMost(settle(usageFromJson(format, parsed), true), settleWaitMs);
    ctx.status = 200;
    ctx.type = 'application/json';
    ctx.body = body;
  };
}

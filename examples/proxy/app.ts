// createApp(config): wires the example gateway — database, cache, billing core, upstream, seed data, routes —
// and returns the Koa app with everything needed to run, inspect and close it. Listening is server.ts's job.
import { randomBytes } from 'node:crypto';
import { Router } from '@koa/router';
import Koa, { type Context, type Next } from 'koa';
import type { Knex } from 'knex';
import { collectDefaultMetrics, Counter, Registry } from 'prom-client';
import { BillingMetrics, createBillingCore, KnexBillingStore, migrateBillingSchema, systemClock, ThrottledLog, type BillingCore } from '../../lib/index.js';
import { billingEligibility } from '../../middleware/index.js';
import { adminRoutes } from './admin-routes.js';
import { authenticate } from './auth.js';
import { completionHandler } from './completion-handler.js';
import { parseCompletionRequest } from './completion-request.js';
import type { ProxyConfig } from './config.js';
import { errorHandler } from './error-handler.js';
import type { ApiFormat } from './gateway-errors.js';
import { GatewayRepository } from './gateway-repo.js';
import { migrateGatewaySchema } from './gateway-schema.js';
import { MemoryPrincipalCache, PrincipalLookup, RedisPrincipalCache } from './principal-cache.js';
import { estimateCompletionCost } from './cost-estimate.js';
import { InFlightTracker } from './in-flight.js';
import { infoRoutes } from './info-routes.js';
import { createLogger, type Logger } from './logger.js';
import { startMockUpstream, type MockUpstream } from './mock-upstream.js';
import { gatewayState } from './request-state.js';
import { openCache, openDatabase, type OpenedCache } from './resources.js';
import { ensureDemoData, type DemoKey } from './seed.js';

export interface CreateAppOptions {
  /** Defaults to a pino logger at config.logLevel on stdout. */
  logger?: Logger;
  /** Epoch-ms clock for created-at stamps and seed expiries. */
  now?: () => number;
}

export interface Gateway {
  app: Koa;
  config: ProxyConfig;
  core: BillingCore;
  knex: Knex;
  logger: Logger;
  adminToken: string;
  /** True when ADMIN_TOKEN was not set and the token was generated for this run. */
  adminTokenGenerated: boolean;
  /** The demo keys from the data folder (empty when the database was seeded elsewhere). */
  demoKeys: DemoKey[];
  upstreamUrl: string;
  /** The bundled mock upstream, when UPSTREAM_URL is not set. */
  mockUpstream: MockUpstream | null;
  /** Open requests and the streams they relay; close() waits for them first. */
  inFlight: InFlightTracker;
  /** Charges started by finished requests; close() waits for them once the billing core has a deadline. */
  settlements: InFlightTracker;
  /**
   * Waits for in-flight requests, then drains the billing core (settlements retried for at most
   * SETTLEMENT_DRAIN_TIMEOUT_MS, the rest logged), then closes the database, cache and mock upstream.
   */
  close(): Promise<void>;
}

/** How long a finished response waits for its settlement, so the client's next request sees the charge. */
const SETTLE_WAIT_MS = 2000;

function requestLog(logger: Logger, inFlight: InFlightTracker) {
  return async function requestLog(ctx: Context, next: Next): Promise<void> {
    const startedAt = performance.now();
    // A streamed answer collects 'close' listeners from Koa's pipeline, the billing context, the
    // relay and this log: more than Node's default warning threshold of 10, none of them a leak.
    ctx.res.setMaxListeners(20);
    // Finished when the response is fully sent or the connection closed, streams included.
    void inFlight.track(
      new Promise<void>((resolve) => {
        ctx.res.once('close', () => {
          const principal = gatewayState(ctx).principal;
          // Only ids and numbers: never headers, bodies or key material.
          logger.info(
            {
              method: ctx.method,
              path: ctx.path,
              status: ctx.status,
              ms: Math.round(performance.now() - startedAt),
              userId: principal?.user.id,
              keyId: principal?.key.id,
              completed: ctx.res.writableFinished,
            },
            'request',
          );
          resolve();
        });
      }),
    );
    await next();
  };
}

function chatRoute(
  router: Router,
  path: string,
  format: ApiFormat,
  deps: {
    principals: PrincipalLookup;
    core: BillingCore;
    config: ProxyConfig;
    logger: Logger;
    inFlight: InFlightTracker;
    settlements: InFlightTracker;
    upstreamUrl: string;
    streamsEndedByBudget: Counter;
  },
): void {
  router.post(
    path,
    authenticate({ principals: deps.principals, platform: format }),
    parseCompletionRequest({ format, maxBodyBytes: deps.config.maxBodyBytes }),
    billingEligibility({
      core: deps.core,
      subject: (ctx) => ctx.state.gateway?.subject,
      format,
      // Reserve the worst case (every allowed output token) so concurrent requests cannot overspend;
      // a metered stream reserves a first slice and grows its hold as it runs (docs/stream-metering.md).
      estimateCost: (ctx) => {
        const { completion, principal } = gatewayState(ctx);
        if (!completion) return undefined;
        const metered = deps.config.metering.enabled && completion.stream;
        return estimateCompletionCost(completion, principal?.group?.rateMultiplier ?? '1', metered ? deps.config.metering.sliceTokens : null);
      },
    }),
    completionHandler({
      format,
      upstream: { baseUrl: deps.upstreamUrl, apiKey: deps.config.upstreamApiKey },
      logger: deps.logger,
      tracker: deps.inFlight,
      settlements: deps.settlements,
      settleWaitMs: SETTLE_WAIT_MS,
      metering: deps.config.metering,
      onEndedByBudget: (cause) => deps.streamsEndedByBudget.inc({ route: format, cause }),
    }),
  );
}

export async function createApp(config: ProxyConfig, options: CreateAppOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const now = options.now ?? Date.now;
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanUp = async () => {
    for (const step of cleanups.reverse()) await step().catch((err: unknown) => logger.error({ err }, 'cleanup failed'));
  };
  try {
    const throttled = new ThrottledLog(logger, systemClock);
    const knex = await openDatabase(config, throttled);
    cleanups.push(() => knex.destroy());
    await migrateBillingSchema(knex);
    await migrateGatewaySchema(knex);

    const opened: OpenedCache = await openCache(config, logger);
    cleanups.push(async () => {
      await opened.cache.close();
      await opened.client?.quit();
    });
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const core = createBillingCore({
      store: new KnexBillingStore(knex),
      cache: opened.cache,
      timezone: config.timezone,
      logger,
      metrics: new BillingMetrics({ registry }),
      closeTimeoutMs: config.settlementDrainTimeoutMs,
    });
    cleanups.push(() => core.close());

    let mockUpstream: MockUpstream | null = null;
    if (config.upstreamUrl === null) {
      mockUpstream = await startMockUpstream(config.mockUpstream);
      const mock = mockUpstream;
      cleanups.push(() => mock.close());
    }
    const upstreamUrl = config.upstreamUrl ?? (mockUpstream as MockUpstream).url;

    const demoKeys = await ensureDemoData({ knex, core, dataDir: config.dataDir, logger, nowMs: now() });
    const adminToken = config.adminToken ?? `adm-${randomBytes(24).toString('base64url')}`;
    const repo = new GatewayRepository(knex);
    const principals = new PrincipalLookup(
      repo,
      opened.client ? new RedisPrincipalCache(opened.client, config.redisPrefix) : new MemoryPrincipalCache(now),
      (err) => throttled.warn('principal cache', { err }, 'API key cache failed; reading the database'),
    );
    cleanups.push(async () => principals.close());
    const inFlight = new InFlightTracker();
    const settlements = new InFlightTracker();

    const app = new Koa();
    // Streams cut by a client that went away end up here; that is expected, not an error.
    app.on('error', (err: Error) => logger.debug({ err: { message: err.message } }, 'response stream closed early'));
    app.use(errorHandler(logger, throttled));
    app.use(requestLog(logger, inFlight));

    const router = new Router();
    const streamsEndedByBudget = new Counter({
      name: 'gateway_streams_ended_by_budget_total',
      help: 'Streamed answers ended early because their hold could not grow: a limit refused it, or it was unavailable (docs/stream-metering.md).',
      labelNames: ['route', 'cause'],
      registers: [registry],
    });
    const deps = { principals, core, config, logger, inFlight, settlements, upstreamUrl, streamsEndedByBudget };
    chatRoute(router, '/v1/chat/completions', 'openai', deps);
    chatRoute(router, '/v1/messages', 'anthropic', deps);
    const info = infoRoutes({ principals, core, registry });
    const admin = adminRoutes({ repo, principals, core, adminToken, now });
    for (const routes of [router, info, admin]) app.use(routes.routes()).use(routes.allowedMethods());

    let closing: Promise<void> | undefined;
    const gateway: Gateway = {
      app,
      config,
      core,
      knex,
      logger,
      adminToken,
      adminTokenGenerated: config.adminToken === null,
      demoKeys,
      upstreamUrl,
      mockUpstream,
      inFlight,
      settlements,
      close: () => {
        // In this order (docs/faults.md, "Shutdown"): a request still running may yet settle, so the
        // core closes only after the requests; its drain deadline then bounds the charges' retries.
        closing ??= (async () => {
          await inFlight.idle();
          await core.close();
          await settlements.idle();
          await cleanUp();
        })();
        return closing;
      },
    };
    return gateway;
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

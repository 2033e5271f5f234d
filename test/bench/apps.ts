// The apps under test, each answering the same small JSON body: bare Koa (also doing a fixed microsecond
// of work, the yardstick of the ratios, and sending the chain's RateLimit fields as fixed strings), the
// full chain on the memory cache + SQLite and on Redis + PostgreSQL (and variants of each), and
// rate-limiter-flexible references.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import type { Knex } from 'knex';
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { Registry } from 'prom-client';
import { createBillingCore, type BillingCore } from '../../lib/billing-core.js';
import { BillingMetrics } from '../../lib/metrics.js';
import { MemoryBillingCache } from '../../lib/cache/memory-cache.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { TurnWrites } from '../../lib/cache/turn-writes.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { billingEligibility } from '../../middleware/index.js';
import { pgKnex } from '../helpers/postgres.js';
import { REDIS_URL } from '../helpers/services.js';
import { createSqliteKnex } from '../helpers/sqlite.js';
import { benchSubject, NEVER_TRIPPING_RPM, seedBenchUser } from './subject.js';

export const APP_IDS = [
  'bare',
  'bare-1us',
  'bare-fields',
  'chain-memory',
  'chain-memory-metrics',
  'chain-memory-no-fields',
  'chain-redis',
  'chain-redis-reserve',
  'chain-redis-reserve-2000',
  'chain-redis-settle',
  'chain-redis-no-fields',
  'rlf-redis',
  'rlf-redis-coalesced',
] as const;
export type AppId = (typeof APP_IDS)[number];

export const APP_LABELS: Readonly<Record<AppId, string>> = {
  bare: '(a) bare Koa',
  'bare-1us': '(a+1µs) (a) + 1 µs of work',
  'bare-fields': "(a+f) (a) + (b)'s RateLimit fields",
  'chain-memory': '(b) chain, memory + SQLite',
  'chain-memory-metrics': '(b+m) (b) with Prometheus metrics',
  'chain-memory-no-fields': '(b-f) (b) without RateLimit fields',
  'chain-redis': '(c) chain, Redis + PostgreSQL',
  'chain-redis-reserve': '(c+r) (c) reserving an estimate',
  'chain-redis-reserve-2000': '(c+r2000) (c+r), 2,000 holds of the user open',
  'chain-redis-settle': '(c+s) (c) settling before it answers',
  'chain-redis-no-fields': '(c-f) (c) without RateLimit fields',
  'rlf-redis': '(d) rate-limiter-flexible Redis',
  'rlf-redis-coalesced': '(d+w) (d), its writes coalesced',
};

/** What the parent passes to a server process (through the environment). */
export interface AppSettings {
  /** PostgreSQL schema, already migrated (chain-redis). */
  pgSchema: string;
  /** Redis key prefix owned by this run (chain-redis, rlf-redis). */
  redisPrefix: string;
  /** ioredis auto-pipelining for both Redis apps, so the two are compared with the same client. */
  autoPipelining: boolean;
}

export interface RunningApp {
  app: Koa;
  close(): Promise<void>;
}

const BODY = Object.freeze({ ok: true });
const BENCH_USER = 'bench-user';

/** The Redis client both Redis apps use: identical options, so the comparison is about the work per request. */
export function benchRedisClient(autoPipelining: boolean): Redis {
  return new Redis(REDIS_URL, { enableAutoPipelining: autoPipelining, maxRetriesPerRequest: 1 });
}

function answer(app: Koa): void {
  app.use(function answer(ctx) {
    ctx.body = BODY;
  });
}

function bare(): RunningApp {
  const app = new Koa();
  answer(app);
  return { app, close: async () => {} };
}

/** Busy time per request of (a+1µs): about what (b)/(a) ≥ 0.90 leaves the whole chain on a 2-core machine. */
const YARDSTICK_WORK_US = 1;

/**
 * Bare Koa holding the CPU for YARDSTICK_WORK_US per request, allocating nothing: what one
 * microsecond of per-request work costs in req/s in the same run, so the ratios of the chain can
 * be read as a budget in microseconds (the load generator shares the cores, so a microsecond in
 * the server costs more than a microsecond of throughput).
 */
function bareWithWork(): RunningApp {
  const app = new Koa();
  app.use(function work(_ctx, next) {
    const until = performance.now() + YARDSTICK_WORK_US / 1000;
    while (performance.now() < until) {
      // busy: the point is the time, not a result
    }
    return next();
  });
  answer(app);
  return { app, close: async () => {} };
}

/**
 * (a+f): bare Koa sending, as fixed strings, the RateLimit and Billing-Spend fields that (b) sends
 * for the benchmark subject (taken from one request through (b) at startup): what the fields cost
 * on the wire, in Node's header handling and in the load generator's parser, apart from the
 * checks that produce them.
 */
async function bareWithFields(): Promise<RunningApp> {
  const fields = await chainFields();
  const app = new Koa();
  app.use(function sendFields(ctx, next) {
    for (const [name, value] of fields) ctx.res.setHeader(name, value);
    return next();
  });
  answer(app);
  return { app, close: async () => {} };
}

const FIELD_NAMES = ['RateLimit-Policy', 'RateLimit', 'Billing-Spend'];

async function chainFields(): Promise<[string, string][]> {
  const chain = await chainMemory();
  const server = http.createServer(chain.app.callback());
  try {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`);
    await response.arrayBuffer();
    const fields = FIELD_NAMES.flatMap((name): [string, string][] => {
      const value = response.headers.get(name);
      return value === null ? [] : [[name, value]];
    });
    if (response.status !== 200 || fields.length !== FIELD_NAMES.length)
      throw new Error(`(a+f): the chain answered ${response.status} with ${fields.length} of the ${FIELD_NAMES.length} fields`);
    return fields;
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await chain.close();
  }
}

/** A tiny estimate, so the reservation is taken (and released when the response ends) on every request. */
const BENCH_ESTIMATE_USD = '0.0001';
/** What (c+s) charges per request: a short completion. */
const BENCH_COST_USD = '0.00012345';

/** Holds of the benchmark user kept open through the whole run of (c+r2000), as long streams would be. */
const OPEN_HOLDS = 2000;

async function chainApp(
  core: BillingCore,
  closeBackends: () => Promise<void>,
  { reserve = false, rateLimitHeaders = true, settle = false, openHolds = 0 },
): Promise<RunningApp> {
  await seedBenchUser(core, BENCH_USER);
  // Resolved once, as a gateway's key cache would hand out the same subject object for a key.
  const subject = benchSubject(BENCH_USER);
  // Opened before the load and never settled: the core renews them for as long as the server runs.
  const held: (() => void)[] = [];
  for (let opened = 0; opened < openHolds; opened += 100) {
    for (const decision of await Promise.all(Array.from({ length: 100 }, () => core.check(subject, { estimateUsd: BENCH_ESTIMATE_USD })))) {
      if (!decision.allowed || !decision.reservation) throw new Error('(c+r2000): a hold to keep open was refused');
      held.push(decision.reservation.release);
    }
  }
  const app = new Koa();
  app.use(billingEligibility({ core, subject: () => subject, rateLimitHeaders, ...(reserve && { estimateCost: () => BENCH_ESTIMATE_USD }) }));
  let sequence = 0;
  // What a gateway does per billed request: the cost is settled (committed) before the answer goes out.
  if (settle)
    app.use(async (ctx, next) => {
      await ctx.state.billing!.settle({ requestId: `bench-${process.pid}-${sequence++}`, costUsd: BENCH_COST_USD });
      await next();
    });
  answer(app);
  return {
    app,
    async close() {
      for (const release of held) release();
      await core.close();
      await closeBackends();
    },
  };
}

/**
 * (b); with `metrics` the same app counting every decision, cache read and check duration (issue
 * 10); without `rateLimitHeaders` the same app without the RateLimit fields, for what they cost.
 */
async function chainMemory({ metrics = false, rateLimitHeaders = true } = {}): Promise<RunningApp> {
  const knex: Knex = await createSqliteKnex();
  const cache = new MemoryBillingCache();
  const core = createBillingCore({
    store: new KnexBillingStore(knex),
    cache,
    ...(metrics && { metrics: new BillingMetrics({ registry: new Registry() }) }),
  });
  return chainApp(
    core,
    async () => {
      await cache.close();
      await knex.destroy();
    },
    { rateLimitHeaders },
  );
}

/**
 * (c); with `reserve` the same app holding an estimate per request (RPM counted in the same script
 * as the hold, so one more round trip, plus the release); with `openHolds` that many holds of the
 * user kept open (renewed) for the whole run; with `settle` the same app settling each request before it answers; without `rateLimitHeaders` the same app without the RateLimit fields, which
 * (d) does not send either.
 */
async function chainRedis(settings: AppSettings, { reserve = false, rateLimitHeaders = true, settle = false, openHolds = 0 } = {}): Promise<RunningApp> {
  const knex = pgKnex(settings.pgSchema, 10);
  const redis = benchRedisClient(settings.autoPipelining);
  const core = createBillingCore({ store: new KnexBillingStore(knex), cache: new RedisBillingCache(redis, { prefix: settings.redisPrefix }) });
  return chainApp(
    core,
    async () => {
      await knex.destroy();
      redis.disconnect();
    },
    { reserve, rateLimitHeaders, settle, openHolds },
  );
}

/**
 * (d); with `coalesced` the same limiter with its command's write held to the end of the event-loop
 * turn exactly as RedisBillingCache holds (c)'s (coalesceWrites, on by default): (c) against (d+w)
 * compares the work per request with the same transport.
 */
function rlfRedis(settings: AppSettings, { coalesced = false } = {}): RunningApp {
  const redis = benchRedisClient(settings.autoPipelining);
  const limiter = new RateLimiterRedis({ storeClient: redis, keyPrefix: `${settings.redisPrefix}rlf`, points: NEVER_TRIPPING_RPM, duration: 60 });
  const turnWrites = coalesced ? new TurnWrites(redis) : null;
  const app = new Koa();
  app.use(async function rateLimit(ctx, next) {
    try {
      // consume() sends its command synchronously, so it is written while the hold lasts.
      turnWrites?.hold();
      await limiter.consume(BENCH_USER);
    } catch {
      ctx.status = 429;
      ctx.body = { error: 'rate limited' };
      return;
    }
    await next();
  });
  answer(app);
  return { app, close: async () => redis.disconnect() };
}

export async function createApp(id: AppId, settings: AppSettings): Promise<RunningApp> {
  switch (id) {
    case 'bare':
      return bare();
    case 'bare-1us':
      return bareWithWork();
    case 'bare-fields':
      return bareWithFields();
    case 'chain-memory':
      return chainMemory();
    case 'chain-memory-metrics':
      return chainMemory({ metrics: true });
    case 'chain-memory-no-fields':
      return chainMemory({ rateLimitHeaders: false });
    case 'chain-redis':
      return chainRedis(settings);
    case 'chain-redis-reserve':
      return chainRedis(settings, { reserve: true });
    case 'chain-redis-reserve-2000':
      return chainRedis(settings, { reserve: true, openHolds: OPEN_HOLDS });
    case 'chain-redis-settle':
      return chainRedis(settings, { settle: true });
    case 'chain-redis-no-fields':
      return chainRedis(settings, { rateLimitHeaders: false });
    case 'rlf-redis':
      return rlfRedis(settings);
    case 'rlf-redis-coalesced':
      return rlfRedis(settings, { coalesced: true });
  }
}

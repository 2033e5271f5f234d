// The faults suites' world: a PostgreSQL schema and a Redis key prefix of their own, each reached by
// the package through a TCP fault proxy, plus direct connections for seeding and for checking results.
import knexFactory, { type Knex } from 'knex';
import { Redis } from 'ioredis';
import { createBillingCore, type BillingCore } from '../../lib/billing-core.js';
import type { BillingCoreOptions } from '../../lib/core-options.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { recommendedRedisOptions } from '../../lib/cache/redis-client-options.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { migrateBillingSchema } from '../../lib/store/migrations.js';
import type { BillingLogger } from '../../lib/types.js';
import { deleteKeysWithPrefix } from '../helpers/redis.js';
import { DATABASE_URL, REDIS_URL, requirePostgres, requireRedis, uniqueSuffix } from '../helpers/services.js';
import { TcpFaultProxy } from '../helpers/tcp-proxy.js';

/** The recommended per-command timeout the proxied Redis client runs with. */
export const COMMAND_TIMEOUT_MS = recommendedRedisOptions().commandTimeout as number;
/** A request makes at most two cache round trips, one after the other: the batched read, then the RPM script. */
export const CACHE_CALLS_PER_REQUEST = 2;

/** The pg/knex settings the README recommends: a lost or silent PostgreSQL fails a query within about 2 s. */
export const PG_TIMEOUTS = Object.freeze({ acquireConnectionTimeout: 2000, connectionTimeoutMillis: 1000, query_timeout: 2000 });

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string | undefined;
  obj: object;
}

/** A logger that keeps what the core reported, so a test can show (and check) its warnings. */
export function recordingLogger(): BillingLogger & { entries: LogEntry[]; count(msg: string): number } {
  const entries: LogEntry[] = [];
  const at = (level: LogEntry['level']) => (obj: object, msg?: string) => void entries.push({ level, msg, obj });
  return {
    entries,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    count: (msg) => entries.filter((entry) => entry.msg === msg).length,
  };
}

export interface FaultEnv {
  schema: string;
  prefix: string;
  pgProxy: TcpFaultProxy;
  redisProxy: TcpFaultProxy;
  /** Through the PostgreSQL proxy, with PG_TIMEOUTS. */
  knex: Knex;
  /** Straight to PostgreSQL: seeding and verification, unaffected by faults. */
  directKnex: Knex;
  /** Through the Redis proxy, with recommendedRedisOptions. */
  redis: Redis;
  directRedis: Redis;
  store: KnexBillingStore;
  directStore: KnexBillingStore;
  cache: RedisBillingCache;
  /** The same keys as `cache`, read straight from Redis. */
  directCache: RedisBillingCache;
  /** Errors the proxied Redis client emitted (each lost connection is one). */
  redisErrors: () => number;
  /** Connection errors the proxied knex logged (silenced, counted). */
  knexErrors: () => number;
  /** A core over the proxied store and cache; closed by cleanup() if the test did not. */
  makeCore(options?: Partial<BillingCoreOptions>): BillingCore;
  cleanup(): Promise<void>;
}

/** Call in `before` (this = the mocha context): skips without the services, like the integration suites. */
export async function createFaultEnv(context: Mocha.Context): Promise<FaultEnv> {
  await requirePostgres(context);
  await requireRedis(context);
  const schema = `kbe_faults_${uniqueSuffix()}`;
  const prefix = `kbe-faults:${uniqueSuffix()}:`;
  const directKnex = knexFactory({ client: 'pg', connection: DATABASE_URL, searchPath: [schema], pool: { min: 0, max: 4 } });
  await directKnex.raw('CREATE SCHEMA ??', [schema]);
  await migrateBillingSchema(directKnex);

  let knexLines = 0;
  const countKnexLine = () => void knexLines++;
  const pgProxy = await TcpFaultProxy.start(DATABASE_URL);
  const redisProxy = await TcpFaultProxy.start(REDIS_URL);
  const { acquireConnectionTimeout, connectionTimeoutMillis, query_timeout } = PG_TIMEOUTS;
  const knex = knexFactory({
    client: 'pg',
    connection: { connectionString: pgProxy.urlFor(DATABASE_URL), connectionTimeoutMillis, query_timeout },
    searchPath: [schema],
    pool: { min: 0, max: 8 },
    acquireConnectionTimeout,
    // knex prints every failed connection attempt; during an injected outage those are expected.
    log: { warn: countKnexLine, error: countKnexLine, debug: () => {}, deprecate: () => {} },
  });

  const redis = new Redis(redisProxy.urlFor(REDIS_URL), recommendedRedisOptions({ lazyConnect: true }));
  let redisErrors = 0;
  redis.on('error', () => void redisErrors++);
  await redis.connect();
  const directRedis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });

  const cores: BillingCore[] = [];
  const store = new KnexBillingStore(knex);
  const cache = new RedisBillingCache(redis, { prefix });
  return {
    schema,
    prefix,
    pgProxy,
    redisProxy,
    knex,
    directKnex,
    redis,
    directRedis,
    store,
    directStore: new KnexBillingStore(directKnex),
    cache,
    directCache: new RedisBillingCache(directRedis, { prefix }),
    redisErrors: () => redisErrors,
    knexErrors: () => knexLines,
    makeCore(coreOptions = {}) {
      const core = createBillingCore({ store, cache, ...coreOptions });
      cores.push(core);
      return core;
    },
    async cleanup() {
      // Faults must not outlive the suite: restore first, so closing cores can drain.
      await pgProxy.restore().catch(() => {});
      await redisProxy.restore().catch(() => {});
      await Promise.allSettled(cores.map((core) => core.close()));
      await knex.destroy();
      redis.disconnect();
      await directKnex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]);
      await directKnex.destroy();
      await deleteKeysWithPrefix(directRedis, prefix);
      directRedis.disconnect();
      await pgProxy.close();
      await redisProxy.close();
    },
  };
}

/** p-th percentile (0–100) of `values` in ms, nearest rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** "p50 1.2 ms, p99 8.4 ms, max 12.0 ms (n=812)" for the printed figures. */
export function latencySummary(values: readonly number[]): string {
  const f = (ms: number) => `${ms.toFixed(1)} ms`;
  return `p50 ${f(percentile(values, 50))}, p99 ${f(percentile(values, 99))}, max ${f(Math.max(...values))} (n=${values.length})`;
}

/** Figures go under the test's title, indented like mocha's own lines. */
export function report(line: string): void {
  console.log(`      ${line}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 25 ms until it holds or `timeoutMs` passes; resolves to the ms it took, or throws. */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
  return performance.now() - started;
}

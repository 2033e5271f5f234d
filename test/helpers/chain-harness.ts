// Runs a behaviour suite on memory cache + SQLite and on Redis + PostgreSQL, each in two request
// shapes (the chain first, and a JSON body parsed before the chain as a gateway does), with an
// instrumented store and cache, a manual clock, and a Koa app factory for supertest.
import Koa from 'koa';
import knexFactory, { type Knex } from 'knex';
import { Redis } from 'ioredis';
import type { Middleware } from 'koa';
import { createBillingCore, type BillingCore } from '../../lib/billing-core.js';
import type { BillingCoreOptions } from '../../lib/core-options.js';
import { ManualClock } from '../../lib/clock.js';
import type { CacheKeys } from '../../lib/cache/keys.js';
import { MemoryBillingCache, memoryRawAccess } from '../../lib/cache/memory-cache.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { migrateBillingSchema } from '../../lib/store/migrations.js';
import type { BillingCache, BillingStore, BillingSubject, Clock } from '../../lib/types.js';
import { billingEligibility } from '../../middleware/index.js';
import { instrument, type Instrumented } from './instrumented.js';
import { DATABASE_URL, REDIS_URL, requirePostgres, requireRedis, uniqueSuffix } from './services.js';

/** 2026-03-04 10:00:00 UTC, a Wednesday. */
export const T0 = Date.UTC(2026, 2, 4, 10, 0, 0);

/**
 * How the app reaches the chain: 'chain first', or 'body parsed first' — the request body read to its
 * end and parsed as JSON before the chain, as every LLM gateway does (it needs the model and the
 * token limits). Node marks a request whose body was read as destroyed, so this shape catches
 * anything that mistakes that for a client that went away.
 */
export type RequestShape = 'chain first' | 'body parsed first';

export interface ChainEnv {
  backend: 'memory+sqlite' | 'redis+postgres';
  shape: RequestShape;
  clock: ManualClock;
  knex: Knex;
  store: Instrumented<BillingStore>;
  cache: Instrumented<BillingCache>;
  realStore: KnexBillingStore;
  core: BillingCore;
  /** A fresh core over the same backends with other options (closed after the test). */
  makeCore(options?: Partial<BillingCoreOptions>): BillingCore;
  /** A Koa app: the chain (or the given middleware) then a handler answering 200 {ok:true}. */
  app(options?: { core?: BillingCore; format?: 'openai' | 'anthropic'; subject?: BillingSubject; middleware?: Middleware[] }): Koa;
  /** A unique user id for this test. */
  userId(label?: string): string;
  /** The cache's key names and its stored hashes, bypassing the cache (to plant corrupt entries). */
  keys: CacheKeys;
  raw: RawCacheAccess;
}

export interface RawCacheAccess {
  /** The stored hash, or null when the key is absent. */
  read(key: string): Promise<Record<string, string> | null>;
  /** Replaces whatever the key holds with `hash` (living an hour). */
  write(key: string, hash: Record<string, string>): Promise<void>;
}

type CacheWithKeys = BillingCache & { readonly keys: CacheKeys };

interface Backends {
  knex: Knex;
  /** The backend's cache; the memory cache runs on `clock`, Redis on its own. */
  makeCache(clock: Clock): { cache: CacheWithKeys; raw: RawCacheAccess };
  cleanup(): Promise<void>;
}

/** SQLite in memory and the memory cache (the embedded default). */
async function memorySqlite(): Promise<Backends> {
  const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: ':memory:' }, useNullAsDefault: true });
  await migrateBillingSchema(knex);
  return {
    knex,
    makeCache(clock) {
      const cache = new MemoryBillingCache({ maxEntries: 10_000, clock, random: () => 0 });
      const raw = cache[memoryRawAccess]();
      return { cache, raw: { read: async (key) => raw.read(key), write: async (key, hash) => raw.write(key, hash) } };
    },
    cleanup: () => knex.destroy(),
  };
}

/** A fresh PostgreSQL schema and a fresh Redis key prefix, both removed by cleanup(). */
async function redisPostgres(): Promise<Backends> {
  const schema = `kbe_chain_${uniqueSuffix()}`;
  const admin = knexFactory({ client: 'pg', connection: DATABASE_URL });
  await admin.raw('CREATE SCHEMA ??', [schema]);
  const knex = knexFactory({ client: 'pg', connection: DATABASE_URL, searchPath: [schema], pool: { min: 0, max: 10 } });
  await migrateBillingSchema(knex);
  const redis = new Redis(REDIS_URL, { lazyConnect: false });
  const prefix = `kbe-test:${uniqueSuffix()}:`;
  return {
    knex,
    makeCache: () => ({
      cache: new RedisBillingCache(redis, { prefix, random: () => 0 }),
      raw: {
        async read(key) {
          const hash = await redis.hgetall(key);
          return Object.keys(hash).length === 0 ? null : hash;
        },
        async write(key, hash) {
          if (Object.keys(hash).length === 0) await redis.del(key);
          else await redis.multi().del(key).hset(key, hash).pexpire(key, 3_600_000).exec();
        },
      },
    }),
    async cleanup() {
      await knex.destroy();
      await admin.raw('DROP SCHEMA ?? CASCADE', [schema]);
      await admin.destroy();
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
      redis.disconnect();
    },
  };
}

/** Reads the whole request body and parses it as JSON (an empty body is undefined), like a body parser. */
async function parseJsonBody(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  (ctx.request as { body?: unknown }).body = text === '' ? undefined : JSON.parse(text);
  await next();
}

export type BackendPair = 'memory+sqlite' | 'redis+postgres';

/** Opens the backend pair before the suite (skipping it loudly when a service is missing) and cleans up after; call inside describe. */
export function useBackends(backend: BackendPair): () => Backends {
  let backends: Backends | undefined;
  before(async function () {
    if (backend === 'redis+postgres') {
      await requirePostgres(this);
      await requireRedis(this);
    }
    backends = backend === 'memory+sqlite' ? await memorySqlite() : await redisPostgres();
  });
  after(async () => {
    await backends?.cleanup();
  });
  return () => backends!;
}

/** Defines `body` once per backend pair and request shape; each test gets a fresh clock, core and instrumentation. */
export function describeChain(title: string, body: (env: () => ChainEnv) => void): void {
  for (const [backend, shape] of [
    ['memory+sqlite', 'chain first'],
    ['memory+sqlite', 'body parsed first'],
    ['redis+postgres', 'chain first'],
    ['redis+postgres', 'body parsed first'],
  ] as const) {
    describe(`${title} [${backend}, ${shape}]`, function () {
      const opened = useBackends(backend);
      let env: ChainEnv;
      const cores: BillingCore[] = [];

      beforeEach(() => {
        const backends = opened();
        const clock = new ManualClock(T0);
        const realStore = new KnexBillingStore(backends.knex);
        const store = instrument<BillingStore>(realStore);
        const made = backends.makeCache(clock);
        const cache = instrument<BillingCache>(made.cache);
        const makeCore = (options: Partial<BillingCoreOptions> = {}) => {
          const core = createBillingCore({ store: store.target, cache: cache.target, clock, ...options });
          cores.push(core);
          return core;
        };
        const core = makeCore();
        env = {
          backend,
          shape,
          clock,
          knex: backends.knex,
          store,
          cache,
          realStore,
          core,
          makeCore,
          app({ core: appCore = core, format = 'openai', subject, middleware } = {}) {
            const app = new Koa();
            if (shape === 'body parsed first') app.use(parseJsonBody);
            app.use(async (ctx, next) => {
              ctx.state.subject = subject ?? (ctx.get('x-subject') ? JSON.parse(ctx.get('x-subject')) : undefined);
              await next();
            });
            for (const mw of middleware ?? [billingEligibility({ core: appCore, subject: (ctx) => ctx.state.subject as BillingSubject, format })]) app.use(mw);
            app.use((ctx) => {
              ctx.body = { ok: true, decision: ctx.state.billing?.decision ?? null };
            });
            return app;
          },
          userId: (label = 'u') => `${label}-${uniqueSuffix()}`,
          keys: made.cache.keys,
          raw: made.raw,
        };
      });

      afterEach(async () => {
        await Promise.all(cores.splice(0).map((core) => core.close()));
      });

      body(() => env);
    });
  }
}

/** A balance-mode subject with optional extras. */
export function balanceSubject(userId: string, extra: Partial<BillingSubject> = {}): BillingSubject {
  return { user: { id: userId }, ...extra };
}

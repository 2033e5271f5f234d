// Issue 7: a warm request through the full chain costs at most two Redis commands and no store query
// (counted by the Redis server with MONITOR, and by knex's 'query' event), with every check active.
import { expect } from 'chai';
import Koa from 'koa';
import type { Knex } from 'knex';
import { Redis } from 'ioredis';
import request from 'supertest';
import { createBillingCore, type BillingCore } from '../../lib/billing-core.js';
import type { BillingDecision } from '../../lib/billing-request.js';
import { MemoryBillingCache } from '../../lib/cache/memory-cache.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import type { BillingCache } from '../../lib/types.js';
import { billingEligibility } from '../../middleware/index.js';
import { benchSubject, seedBenchUser } from '../bench/subject.js';
import { createPgSchema, type PgSchema } from '../helpers/postgres.js';
import { commandsSentDuring, deleteKeysWithPrefix } from '../helpers/redis.js';
import { REDIS_URL, requirePostgres, requireRedis, uniqueSuffix } from '../helpers/services.js';
import { createSqliteKnex } from '../helpers/sqlite.js';

type Check = BillingDecision['checks'][number];

/** The checks the benchmark subject must pass, all from the cache once warm. */
const CACHED_CHECKS = ['balance', 'platformQuota', 'apiKeyWindows', 'rpm'];

interface Harness {
  app: Koa;
  core: BillingCore;
  /** Store queries since the harness was built (knex 'query' events). */
  queries(): number;
}

function harness(knex: Knex, cache: BillingCache, userId: string): Harness {
  const core = createBillingCore({ store: new KnexBillingStore(knex), cache });
  let queries = 0;
  knex.on('query', () => queries++);
  const subject = benchSubject(userId);
  const app = new Koa();
  app.use(billingEligibility({ core, subject: () => subject }));
  app.use((ctx) => {
    ctx.body = { decision: ctx.state.billing?.decision };
  });
  return { app, core, queries: () => queries };
}

async function checksOf(app: Koa): Promise<Check[]> {
  const res = await request(app.callback()).post('/v1/chat/completions').expect(200);
  return (res.body as { decision: BillingDecision }).decision.checks;
}

const fromCache = (checks: Check[]) =>
  CACHED_CHECKS.every((name) => checks.some((c) => c.check === name && c.outcome === 'allowed' && c.source === 'cache'));

/** Sends requests until one is answered from the cache alone (cache fills after the misses are asynchronous). */
async function warmUp(app: Koa): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    if (fromCache(await checksOf(app))) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the chain never answered from the cache alone');
}

/** The host and port MONITOR watches: the server the cache's client talks to. */
function redisNode(): { host: string; port: number } {
  const url = new URL(REDIS_URL);
  return { host: url.hostname || '127.0.0.1', port: Number(url.port || 6379) };
}

describe('warm path on Redis + PostgreSQL (issue 7)', function () {
  let pg: PgSchema;
  const prefix = `kbe-warm:${uniqueSuffix()}:`;
  const clients: Redis[] = [];
  const cores: BillingCore[] = [];

  before(async function () {
    await requirePostgres(this);
    await requireRedis(this);
    pg = await createPgSchema();
  });

  after(async () => {
    await Promise.all(cores.map((core) => core.close()));
    if (clients[0]) await deleteKeysWithPrefix(clients[0], prefix);
    for (const client of clients) client.disconnect();
    await pg?.destroy();
  });

  for (const autoPipelining of [false, true]) {
    it(`every check active, warm: at most 2 Redis commands and 0 store queries (auto-pipelining ${autoPipelining ? 'on' : 'off'})`, async () => {
      const client = new Redis(REDIS_URL, { enableAutoPipelining: autoPipelining, maxRetriesPerRequest: 1 });
      clients.push(client);
      const userId = `warm-${autoPipelining ? 'ap' : 'plain'}-${uniqueSuffix()}`;
      const { app, core, queries } = harness(pg.knex, new RedisBillingCache(client, { prefix }), userId);
      cores.push(core);
      await seedBenchUser(core, userId);

      // Cold: the key windows and the RPM override are not cached yet, so the store is asked —
      // which also proves the query counter counts.
      const before = queries();
      await checksOf(app);
      expect(queries() - before).to.be.greaterThan(0);
      await warmUp(app);

      const queriesBefore = queries();
      let checks: Check[] = [];
      const commands = await commandsSentDuring([redisNode()], client, async () => {
        checks = await checksOf(app);
      });
      expect(queries() - queriesBefore, 'store queries on the warm path').to.equal(0);
      // The batched read and the RPM script: one EVALSHA each (EVAL only on a connection's first use).
      expect(commands.map((args) => args[0]?.toLowerCase()), 'Redis commands on the warm path').to.deep.equal(['evalsha', 'evalsha']);
      expect(checks.map((c) => c.check)).to.include.members(['breaker', ...CACHED_CHECKS]);
      expect(fromCache(checks)).to.equal(true);
      const rpm = checks.find((c) => c.check === 'rpm');
      expect(rpm?.windows?.map((w) => w.window)).to.deep.equal(['group', 'user'], 'both RPM caps counted');
    });
  }
});

describe('warm path on the memory cache + SQLite (issue 7)', () => {
  let knex: Knex;
  let cache: MemoryBillingCache;
  let core: BillingCore | undefined;

  before(async () => {
    knex = await createSqliteKnex();
    cache = new MemoryBillingCache();
  });

  after(async () => {
    await core?.close();
    await cache.close();
    await knex.destroy();
  });

  it('every check active, warm: 0 store queries', async () => {
    const userId = `warm-mem-${uniqueSuffix()}`;
    const built = harness(knex, cache, userId);
    core = built.core;
    await seedBenchUser(built.core, userId);
    const before = built.queries();
    await checksOf(built.app);
    expect(built.queries() - before).to.be.greaterThan(0);
    await warmUp(built.app);

    const queriesBefore = built.queries();
    const checks = await checksOf(built.app);
    expect(built.queries() - queriesBefore).to.equal(0);
    expect(fromCache(checks)).to.equal(true);
  });
});

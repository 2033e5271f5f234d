// The warm path (docs/architecture.md): a warm request through the full chain costs one Redis command (two after its data changed)
// and no store query (counted by the Redis server with MONITOR, and by knex's 'query' event), with
// every check active; counting RPM with the read never counts a request the checks refuse.
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

/** `holds`: every request also reserves an estimate and takes a concurrency slot; `beforeHandler` runs first in the handler. */
function harness(knex: Knex, cache: BillingCache, userId: string, holds?: { beforeHandler: () => Promise<unknown> }): Harness {
  const core = createBillingCore({ store: new KnexBillingStore(knex), cache });
  let queries = 0;
  knex.on('query', () => queries++);
  const bench = benchSubject(userId);
  const subject = holds ? { ...bench, user: { ...bench.user, maxConcurrency: 100 } } : bench;
  const app = new Koa();
  app.use(billingEligibility({ core, subject: () => subject, estimateCost: holds ? () => '0.001' : undefined }));
  app.use(async (ctx) => {
    await holds?.beforeHandler();
    ctx.body = { decision: ctx.state.billing?.decision };
  });
  return { app, core, queries: () => queries };
}

async function checksOf(app: Koa): Promise<Check[]> {
  const res = await request(app.callback()).post('/v1/chat/completions').expect(200);
  return (res.body as { decision: BillingDecision }).decision.checks;
}

const fromCache = (checks: Check[]) => CACHED_CHECKS.every((name) => checks.some((c) => c.check === name && c.outcome === 'allowed' && c.source === 'cache'));

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

describe('warm path on Redis + PostgreSQL (docs/benchmark.md)', function () {
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

  /** A harness on its own client, seeded and warmed until a request is answered from the cache alone. */
  async function warmHarness(
    autoPipelining: boolean,
    name: string,
    holds?: { beforeHandler: () => Promise<unknown> },
  ): Promise<Harness & { client: Redis; userId: string }> {
    const client = new Redis(REDIS_URL, { enableAutoPipelining: autoPipelining, maxRetriesPerRequest: 1 });
    clients.push(client);
    const userId = `warm-${name}-${uniqueSuffix()}`;
    const built = harness(pg.knex, new RedisBillingCache(client, { prefix }), userId, holds);
    cores.push(built.core);
    await seedBenchUser(built.core, userId);
    // Cold: the key windows and the RPM override are not cached yet, so the store is asked —
    // which also proves the query counter counts.
    const before = built.queries();
    await checksOf(built.app);
    expect(built.queries() - before).to.be.greaterThan(0);
    await warmUp(built.app);
    // Once more, so the counting read has been sent (as EVAL, a connection's first use) before counting.
    await checksOf(built.app);
    return { ...built, client, userId };
  }

  /** The Redis commands and store queries of one request, and what it decided. */
  async function measured(built: Harness & { client: Redis }): Promise<{ commands: string[]; queries: number; checks: Check[] }> {
    const queriesBefore = built.queries();
    let checks: Check[] = [];
    const commands = await commandsSentDuring([redisNode()], built.client, async () => {
      checks = await checksOf(built.app);
    });
    return { commands: commands.map((args) => args[0]!.toLowerCase()), queries: built.queries() - queriesBefore, checks };
  }

  const rpmUsage = (checks: Check[]) => checks.find((c) => c.check === 'rpm')?.windows?.map((w) => [w.window, w.usage]);

  for (const autoPipelining of [false, true]) {
    it(`every check active, warm: 1 Redis command and 0 store queries (auto-pipelining ${autoPipelining ? 'on' : 'off'})`, async () => {
      const built = await warmHarness(autoPipelining, autoPipelining ? 'ap' : 'plain');
      const { commands, queries, checks } = await measured(built);
      expect(queries, 'store queries on the warm path').to.equal(0);
      // The batched read counting RPM in the same script: one EVALSHA.
      expect(commands, 'Redis commands on the warm path').to.deep.equal(['evalsha']);
      expect(checks.map((c) => c.check)).to.include.members(['breaker', ...CACHED_CHECKS]);
      expect(fromCache(checks)).to.equal(true);
      const rpm = checks.find((c) => c.check === 'rpm');
      expect(rpm?.windows?.map((w) => w.window)).to.deep.equal(['group', 'user'], 'both RPM caps counted');
    });
  }

  it('with an estimate and a concurrency cap, warm: 2 Redis commands before the handler (the read, then the holds with RPM), 0 store queries', async () => {
    let marker: (() => Promise<unknown>) | undefined;
    const built = await warmHarness(false, 'holds', { beforeHandler: () => marker?.() ?? Promise.resolve() });
    // The handler's first act is an ECHO on the same client: what MONITOR saw before it is the chain's.
    marker = () => built.client.echo('handler-starts');
    const { commands, queries, checks } = await measured(built);
    expect(queries, 'store queries on the warm path').to.equal(0);
    const beforeHandler = commands.slice(0, commands.indexOf('echo'));
    expect(beforeHandler, 'Redis commands before the handler').to.deep.equal(['evalsha', 'evalsha']);
    expect(checks.map((c) => [c.check, c.outcome])).to.deep.include.members([
      ['reservation', 'allowed'],
      ['concurrency', 'allowed'],
      ['rpm', 'allowed'],
    ]);
    expect(checks.find((c) => c.check === 'rpm')?.windows?.map((w) => w.window)).to.deep.equal(['group', 'user'], 'both RPM caps counted with the holds');
  });

  it('after a write the next request reads the fresh data, then counts RPM on its own: 2 commands, then 1 again', async () => {
    const built = await warmHarness(true, 'write');
    const counted = await measured(built);
    await built.core.admin.topUp(built.userId, '1'); // puts the new balance into the cache
    const afterWrite = await measured(built);
    expect(afterWrite.commands).to.deep.equal(['evalsha', 'evalsha'], 'the counting read declined (data changed), then the RPM script');
    expect(afterWrite.queries).to.equal(0);
    const balance = afterWrite.checks.find((c) => c.check === 'balance');
    expect(balance?.windows?.[0]?.usage).to.equal('1000001.00000000', 'checked on the fresh balance');
    const next = await measured(built);
    expect(next.commands).to.deep.equal(['evalsha']);
    // Each request counted exactly once, whichever way.
    const users = [counted, afterWrite, next].map((m) => Number(rpmUsage(m.checks)?.find(([w]) => w === 'user')?.[1]));
    expect(users[1]).to.equal(users[0]! + 1);
    expect(users[2]).to.equal(users[0]! + 2);
  });

  it('a request refused on data another instance changed since the last read does not count RPM (docs/behaviour.md#the-chain-in-order)', async () => {
    const built = await warmHarness(true, 'refused');
    const { checks } = await measured(built);
    const countBefore = rpmUsage(checks);
    // Another gateway instance (its own core and client) empties the balance: this instance still
    // holds the old reply, on which every check passes.
    const otherClient = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    clients.push(otherClient);
    const other = createBillingCore({ store: new KnexBillingStore(pg.knex), cache: new RedisBillingCache(otherClient, { prefix }) });
    cores.push(other);
    await other.admin.setBalance(built.userId, '0');

    const res = await request(built.app.callback()).post('/v1/chat/completions').expect(403);
    expect(res.body.error.code).to.equal('insufficient_balance');
    await other.admin.setBalance(built.userId, '5');
    const after = await measured(built);
    // The refused request left both counters where they were: this one is the next.
    const expected = countBefore?.map(([window, usage]) => [window, String(Number(usage) + 1)]);
    expect(rpmUsage(after.checks)).to.deep.equal(expected);
  });
});

describe('warm path on the memory cache + SQLite (docs/benchmark.md)', () => {
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

// The example gateway under load while PostgreSQL is cut (through this test's TCP proxy): keys it has
// seen are served from its caches, keys it has not are answered 503 in the route's format, never 500,
// and the log gets a few throttled lines, not one per request. Settlements made meanwhile land once.
import { expect } from 'chai';
import knexFactory from 'knex';
import { startHarness, type GatewayHarness, type TestUser } from '../e2e/gateway-harness.js';
import { deleteKeysWithPrefix, createRedisClient } from '../helpers/redis.js';
import { DATABASE_URL, REDIS_URL, requirePostgres, requireRedis, uniqueSuffix } from '../helpers/services.js';
import { TcpFaultProxy } from '../helpers/tcp-proxy.js';
import { report, sleep } from './fault-env.js';

const CUT_MS = 4000;
const WORKERS = 16;

describe('faults: the example gateway while PostgreSQL is cut', function () {
  this.timeout(60_000);
  let proxy: TcpFaultProxy;
  let harness: GatewayHarness;
  let schema: string;
  let prefix: string;

  before(async function () {
    await requirePostgres(this);
    await requireRedis(this);
    schema = `kbe_gw_outage_${uniqueSuffix()}`;
    prefix = `kbe-gw-outage-${uniqueSuffix()}:`;
    proxy = await TcpFaultProxy.start(DATABASE_URL);
    harness = await startHarness({ DATABASE_URL: proxy.urlFor(DATABASE_URL), DATABASE_SCHEMA: schema, REDIS_URL, REDIS_PREFIX: prefix });
  });

  after(async () => {
    await proxy?.restore().catch(() => {});
    await harness?.close();
    await proxy?.close();
    const knex = knexFactory({ client: 'pg', connection: DATABASE_URL, pool: { min: 0, max: 1 } });
    await knex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]).finally(() => knex.destroy());
    const redis = createRedisClient();
    await deleteKeysWithPrefix(redis, prefix).finally(() => redis.disconnect());
  });

  const chat = (user: TestUser) =>
    harness
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send({ model: 'gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'Say hello to the billing test.' }] });

  it('zero 500s: warm keys are served, cold keys get 503 billing_service_error, the log stays quiet; settlements land once after', async () => {
    const h = harness;
    const warm = [await h.createUser(), await h.createUser(), await h.createUser()];
    const cold = [await h.createUser(), await h.createUser()];
    for (const user of warm) for (let i = 0; i < 2; i++) await chat(user).expect(200);
    await h.gateway.settlements.idle();

    await proxy.cut();
    const logsBefore = h.logs.length;
    const statuses = { warm: new Map<number, number>(), cold: new Map<number, number>() };
    const okBodies: string[] = [];
    const coldBodies = new Set<string>();
    const until = Date.now() + CUT_MS;
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, worker) => {
        for (let i = 0; Date.now() < until; i++) {
          const isWarm = (worker + i) % 2 === 0;
          const user = isWarm ? warm[i % warm.length]! : cold[i % cold.length]!;
          const res = await chat(user);
          const counts = isWarm ? statuses.warm : statuses.cold;
          counts.set(res.status, (counts.get(res.status) ?? 0) + 1);
          if (isWarm && res.status === 200) okBodies.push(res.body.id as string);
          if (!isWarm) coldBodies.add(JSON.stringify(res.body));
        }
      }),
    );
    // Routes beside the chat: the caller's usage, an admin write.
    const usage = await h.http().get('/v1/usage').set('Authorization', `Bearer ${warm[0]!.key}`);
    const admin = await h.admin('post', `/admin/users/${warm[0]!.userId}/top-up`, { amountUsd: '1' });
    const lines = h.logs.slice(logsBefore).map((line) => JSON.parse(line) as { level: number; msg: string });
    const loud = lines.filter((line) => line.level >= 40);
    await proxy.restore();

    const all = [...statuses.warm, ...statuses.cold];
    report(
      `${CUT_MS} ms cut, ${WORKERS} workers: warm ${JSON.stringify([...statuses.warm])}, cold ${JSON.stringify([...statuses.cold])}; ` +
        `${loud.length} warn/error log lines (${(loud.length / (CUT_MS / 1000)).toFixed(1)}/s): ${[...new Set(loud.map((l) => l.msg))].join('; ')}`,
    );
    expect(all.filter(([status]) => status === 500)).to.deep.equal([], 'no 500');
    expect([...statuses.warm.keys()]).to.deep.equal([200], 'warm keys are served');
    expect([...statuses.cold.keys()]).to.deep.equal([503], 'cold keys are 503');
    expect([...coldBodies]).to.deep.equal([
      JSON.stringify({ error: { type: 'api_error', code: 'billing_service_error', message: 'Billing service temporarily unavailable. Please retry later.' } }),
    ]);
    expect(usage.status).to.equal(503);
    expect(admin.status).to.equal(503);
    expect(loud.length / (CUT_MS / 1000)).to.be.at.most(5, 'a few log lines a second');

    // After the cut, every warm request served during it is charged exactly once.
    await h.gateway.settlements.idle();
    for (const user of warm) {
      const rows = await h.gateway.core.listUsage(user.userId, 1000);
      expect(rows.length).to.equal(2 + okBodies.filter((id) => rows.some((row) => row.requestId === id)).length);
    }
    const charged = (await Promise.all(warm.map((user) => h.gateway.core.listUsage(user.userId, 1000)))).flat().map((row) => row.requestId);
    expect(okBodies.filter((id) => !charged.includes(id))).to.deep.equal([], 'every request served during the cut is charged');
    expect(new Set(charged).size).to.equal(charged.length);
    await sleep(0);
  });
});

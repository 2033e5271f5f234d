// Redis down (a redis-server this test owns, killed) under the example gateway: reservations are held
// in PostgreSQL instead, so 200 concurrent requests on a $0.005 balance spend at most the balance plus
// one request's estimate; with PostgreSQL cut as well (this test's TCP proxy), requests are refused
// with 503 and nothing is spent.
import { expect } from 'chai';
import knexFactory from 'knex';
import { formatUsd, parseUsd } from '../../lib/index.js';
import { estimateCompletionCost } from '../../examples/proxy/cost-estimate.js';
import { findModelPrice } from '../../examples/proxy/prices.js';
import { startHarness, type GatewayHarness } from '../e2e/gateway-harness.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { DATABASE_URL, requirePostgres, uniqueSuffix } from '../helpers/services.js';
import { TcpFaultProxy } from '../helpers/tcp-proxy.js';
import { report } from './fault-env.js';

const BODY = { model: 'gpt-4o', max_tokens: 24, messages: [{ role: 'user', content: 'Say hello to the billing test.' }] };

describe('faults: Redis down, reservations held in the store', function () {
  this.timeout(60_000);
  let redis: RedisServerHandle;
  let proxy: TcpFaultProxy;
  let harness: GatewayHarness;
  const schema = `kbe_redis_down_${uniqueSuffix()}`;

  before(async function () {
    await requirePostgres(this);
    redis = await startRedisServer();
    proxy = await TcpFaultProxy.start(DATABASE_URL);
    harness = await startHarness({ DATABASE_URL: proxy.urlFor(DATABASE_URL), DATABASE_SCHEMA: schema, REDIS_URL: redis.url, REDIS_PREFIX: 'kbe-redis-down:' });
  });

  after(async () => {
    await proxy?.restore().catch(() => {});
    await harness?.close();
    await proxy?.close();
    await redis?.stop();
    const knex = knexFactory({ client: 'pg', connection: DATABASE_URL, pool: { min: 0, max: 1 } });
    await knex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]).finally(() => knex.destroy());
  });

  it('200 concurrent requests on $0.005 with Redis killed: charged at most the balance plus one estimate; with PostgreSQL cut too: 503', async () => {
    const h = harness;
    const user = await h.createUser({ balanceUsd: '0.005' });
    const chat = () => h.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(BODY);
    await redis.kill();

    const statuses = await Promise.all(Array.from({ length: 200 }, () => chat().then((res) => res.status)));
    await h.gateway.inFlight.idle();
    await h.gateway.settlements.idle();
    const rows = await h.gateway.core.listUsage(user.userId, 1000);
    const charged = rows.reduce((sum, row) => sum + parseUsd(row.costUsd), 0n);
    const balance = await h.gateway.core.getBalance(user.userId);
    // The estimate the gateway reserved for this body (bytes as supertest sends them).
    const estimate = parseUsd(
      estimateCompletionCost(
        {
          body: BODY,
          price: findModelPrice('gpt-4o')!,
          stream: false,
          promptEstimate: 8,
          promptBound: Buffer.byteLength(JSON.stringify(BODY)),
        },
        '1',
      ),
    );
    const counts = new Map<number, number>();
    for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1);
    const heldLogs = h.logs.filter((line) => line.includes('holding it in the store')).length;
    report(
      `Redis killed: ${JSON.stringify([...counts])}; ${rows.length} charged ${formatUsd(charged)} USD on 0.005 (estimate ${formatUsd(estimate)}), balance ${balance}; ${heldLogs} "held in the store" log lines`,
    );
    expect(counts.get(200) ?? 0).to.be.above(0);
    expect([...counts.keys()].every((status) => status === 200 || status === 403)).to.equal(true, JSON.stringify([...counts]));
    expect(rows.length).to.equal(counts.get(200));
    expect(charged <= parseUsd('0.005') + estimate).to.equal(true, `charged ${formatUsd(charged)}`);
    const {
      rows: [holds],
    } = (await h.gateway.knex.raw('SELECT count(*) AS n FROM billing_store_holds')) as { rows: { n: string }[] };
    expect(Number(holds!.n)).to.equal(0, 'every store hold was released by its settlement');

    // PostgreSQL cut as well: nothing can be held anywhere, so nothing is admitted.
    await h.createUser({ balanceUsd: '1' }).then(async (rich) => {
      await proxy.cut();
      const refused = await Promise.all(
        Array.from({ length: 20 }, () =>
          h
            .http()
            .post('/v1/chat/completions')
            .set('Authorization', `Bearer ${rich.key}`)
            .send(BODY)
            .then((res) => res.status),
        ),
      );
      report(`Redis and PostgreSQL down: ${refused.length} requests, statuses ${JSON.stringify([...new Set(refused)])}`);
      expect(new Set(refused)).to.deep.equal(new Set([503]));
      await proxy.restore();
    });
  });
});

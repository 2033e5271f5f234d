// The example gateway with REDIS_CLUSTER_NODES: the billing cache on a three-master Redis Cluster started for the suite.
import { expect } from 'chai';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster.js';
import { uniqueSuffix } from '../helpers/services.js';
import { startHarness, type GatewayHarness } from './gateway-harness.js';

const chat = { model: 'gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'Say hello to the billing test.' }] };

describe('example gateway e2e: Redis Cluster cache', function () {
  this.timeout(40_000);
  let cluster: RedisClusterHandle | undefined;
  let harness: GatewayHarness;

  before(async () => {
    cluster = await startRedisCluster();
    const nodes = cluster.nodes.map(({ host, port }) => `${host}:${port}`).join(',');
    harness = await startHarness({ REDIS_CLUSTER_NODES: nodes, REDIS_PREFIX: `kbe-e2e-${uniqueSuffix()}:` });
  });

  after(async () => {
    await harness?.close();
    await cluster?.stop();
  });

  it('reports the cluster reachable on /healthz', async () => {
    const res = await harness.http().get('/healthz').expect(200);
    expect(res.body).to.include({ store: true, cache: true });
  });

  it('charges exactly, refuses over RPM with 429, and sees an admin top-up on the next request', async () => {
    const user = await harness.createUser({ balanceUsd: '1.00' });
    const call = () => harness.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(chat);
    await call().expect(200);
    expect(await harness.gateway.core.getBalance(user.userId)).to.equal('0.99999280');

    await harness.admin('put', `/admin/users/${user.userId}/balance`, { balanceUsd: '0' }).expect(200);
    await call().expect(403);
    await harness.admin('post', `/admin/users/${user.userId}/top-up`, { amountUsd: '1' }).expect(200);
    await call().expect(200);

    await harness.admin('put', `/admin/users/${user.userId}/rpm-override`, { rpm: 1 }).expect(200);
    // A cap of 1: of three quick requests at least one lands in a minute already used.
    const statuses = [(await call()).status, (await call()).status, (await call()).status];
    expect(statuses).to.include(429);
  });
});

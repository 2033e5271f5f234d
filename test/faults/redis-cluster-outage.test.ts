// A throwaway Redis Cluster behind one fault proxy per node (natMap): with recommendedClusterOptions a
// cut of every node fails fast to the store, and the cluster client finds its way back after restore.
import { expect } from 'chai';
import { Cluster } from 'ioredis';
import { createBillingCore, type BillingCore } from '../../lib/billing-core.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { recommendedClusterOptions } from '../../lib/cache/redis-client-options.js';
import { formatUsd } from '../../lib/money.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster.js';
import { TcpFaultProxy } from '../helpers/tcp-proxy.js';
import { CACHE_CALLS_PER_REQUEST, COMMAND_TIMEOUT_MS, createFaultEnv, latencySummary, report, sleep, waitFor, type FaultEnv } from './fault-env.js';
import { Ledger, expectCacheEqualsStore, expectStoreExact, makeUsers, randomCostUnits, seedUsers, seededRandom, subjectOf } from './workload.js';

describe('faults: Redis Cluster cut', function () {
  this.timeout(60_000);
  let env: FaultEnv;
  let cluster: RedisClusterHandle | undefined;
  let proxies: TcpFaultProxy[] = [];
  let client: Cluster | undefined;

  before(async function () {
    env = await createFaultEnv(this);
    cluster = await startRedisCluster();
    proxies = await Promise.all(cluster.nodes.map((node) => TcpFaultProxy.start(node)));
    // The nodes announce their real ports; natMap sends the client through the proxies instead.
    const natMap = Object.fromEntries(cluster.nodes.map((node, i) => [`${node.host}:${node.port}`, { host: proxies[i]!.host, port: proxies[i]!.port }]));
    client = new Cluster(
      proxies.map((proxy) => ({ host: proxy.host, port: proxy.port })),
      recommendedClusterOptions({ natMap, lazyConnect: true }),
    );
    client.on('error', () => {});
    client.on('node error', () => {});
    await client.connect();
  });

  after(async () => {
    client?.disconnect();
    await Promise.all(proxies.map((proxy) => proxy.close()));
    await cluster?.stop();
    await env?.cleanup();
  });

  it('every node cut for 3 s: checks read the store at once, settlements land once, the cache serves again after restore', async () => {
    const users = makeUsers(10, 'cluster');
    await seedUsers(env.directStore, users);
    const cache = new RedisBillingCache(client!, { prefix: env.prefix });
    const core: BillingCore = createBillingCore({ store: env.directStore, cache });
    for (const user of users) await core.check(subjectOf(user));
    await waitFor('the users to be cached on the cluster', async () => (await expectCacheEqualsStore(cache, env.directStore, users, false)).misses === 0, 3000);

    const random = seededRandom(0xc1);
    const ledger = new Ledger();
    const check = async (index: number) => {
      const user = users[index % users.length]!;
      const started = performance.now();
      const result = await core.check(subjectOf(user));
      const ms = performance.now() - started;
      const units = randomCostUnits(random);
      const requestId = `cluster-${ledger.size}`;
      ledger.record(requestId, user.id, units);
      await core.settle({ requestId, subject: subjectOf(user), costUsd: formatUsd(units) });
      return { ms, allowed: result.allowed, source: result.checks.find((c) => c.check === 'balance')?.source };
    };

    await Promise.all(proxies.map((proxy) => proxy.cut()));
    await sleep(50);
    const during = [];
    // 3 s of paced traffic, so the cluster client's reconnect backoff reaches its cap.
    const cutAt = performance.now();
    for (let i = 0; performance.now() - cutAt < 3000; i++) {
      during.push(await check(i));
      await sleep(25);
    }
    await Promise.all(proxies.map((proxy) => proxy.restore()));
    const restoredAt = performance.now();
    let cacheBackMs = Number.NaN;
    for (let i = 0; Number.isNaN(cacheBackMs); i++) {
      if ((await check(i)).source === 'cache') cacheBackMs = performance.now() - restoredAt;
      else if (performance.now() - restoredAt > 4000) expect.fail('the cluster cache did not serve again within 4 s of restore');
      else await sleep(20);
    }
    await core.close();

    const bound = CACHE_CALLS_PER_REQUEST * COMMAND_TIMEOUT_MS + 300;
    report(
      `all ${proxies.length} nodes cut: ${latencySummary(during.map((d) => d.ms))} per check (bound ${bound} ms); balance from ${[...new Set(during.map((d) => d.source))].join(', ')}`,
    );
    report(`cache served again ${cacheBackMs.toFixed(0)} ms after restore; ${ledger.size} settlements`);
    expect(during.every((d) => d.allowed && d.source === 'store')).to.equal(true);
    expect(Math.max(...during.map((d) => d.ms))).to.be.below(bound);
    expect(cacheBackMs).to.be.below(3000);

    await expectStoreExact(env.directKnex, env.directStore, users, ledger);
    const refill = createBillingCore({ store: env.directStore, cache });
    for (const user of users) await refill.check(subjectOf(user));
    await refill.close();
    const cached = await expectCacheEqualsStore(cache, env.directStore, users, true);
    report(`store exact; after one refill pass ${cached.hits}/${cached.hits} cluster entries equal to the store`);
  });
});

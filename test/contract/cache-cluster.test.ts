// Runs the BillingCache contract against RedisBillingCache on a three-master Redis Cluster that the
// suite starts on loopback ports and removes afterwards.
import { startRedisCluster } from '../helpers/redis-cluster.js';
import { uniqueSuffix } from '../helpers/services.js';
import { describeCacheContract } from './cache-contract.js';
import { redisCacheTarget } from './cache-redis-target.js';

describeCacheContract('Redis Cluster', async (context) => {
  context.timeout(30_000);
  const cluster = await startRedisCluster();
  const client = await cluster.connect();
  return redisCacheTarget(client, `kbe-test-${uniqueSuffix()}:`, cluster.nodes, () => cluster.stop());
});

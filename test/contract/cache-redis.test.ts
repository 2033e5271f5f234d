// Runs the BillingCache contract against RedisBillingCache on the shared Redis, under a unique prefix
// whose keys are deleted afterwards.
import { createRedisClient, deleteKeysWithPrefix } from '../helpers/redis.js';
import { REDIS_URL, requireRedis, uniqueSuffix } from '../helpers/services.js';
import { describeCacheContract } from './cache-contract.js';
import { redisCacheTarget } from './cache-redis-target.js';

describeCacheContract('single Redis', async (context) => {
  await requireRedis(context);
  const client = createRedisClient();
  const prefix = `kbe-test-${uniqueSuffix()}:`;
  const url = new URL(REDIS_URL);
  const node = { host: url.hostname || '127.0.0.1', port: Number(url.port || 6379) };
  return redisCacheTarget(client, prefix, [node], async () => {
    await deleteKeysWithPrefix(client, prefix);
    client.disconnect();
  });
});

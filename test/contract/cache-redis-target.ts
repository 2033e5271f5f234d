// The contract's view of RedisBillingCache on a given client (single Redis or Cluster): raw access by
// HGETALL/DEL+HSET/PTTL, and command counting by MONITOR on the given nodes (round trips, and the
// commands scripts run).
import type { Cluster, Redis } from 'ioredis';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { commandsSentDuring, type RedisNodeAddress } from '../helpers/redis.js';
import type { CacheTarget } from './cache-contract.js';

export function redisCacheTarget(client: Redis | Cluster, prefix: string, nodes: RedisNodeAddress[], close: () => Promise<void>): CacheTarget {
  return {
    open(options = {}) {
      const cache = new RedisBillingCache(client, { prefix, ...options });
      return {
        cache,
        raw: {
          async read(key) {
            const hash = await client.hgetall(key);
            return Object.keys(hash).length === 0 ? null : hash;
          },
          async write(key, hash) {
            await client.del(key);
            await client.hset(key, hash);
            await client.pexpire(key, 3_600_000);
          },
          ttlMs: (key) => client.pttl(key),
        },
      };
    },
    async countCommands(_cache, action) {
      return (await commandsSentDuring(nodes, client, action)).length;
    },
    async scriptedCommands(action) {
      return commandsSentDuring(nodes, client, action, { scripted: true });
    },
    close,
  };
}

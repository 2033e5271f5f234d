// Runs the BillingCache contract against MemoryBillingCache on a manual clock.
import { ManualClock } from '../../lib/clock.js';
import { MemoryBillingCache, memoryRawAccess } from '../../lib/cache/memory-cache.js';
import { describeCacheContract, type CacheTarget } from './cache-contract.js';

describeCacheContract('memory', async () => {
  const clock = new ManualClock(Date.UTC(2025, 0, 6, 9, 30, 0));
  const target: CacheTarget = {
    open(options = {}) {
      const cache = new MemoryBillingCache({ clock, maxEntries: 10_000, ...options });
      const raw = cache[memoryRawAccess]();
      return {
        cache,
        raw: {
          read: async (key) => raw.read(key),
          write: async (key, hash) => raw.write(key, hash),
          ttlMs: async (key) => raw.ttlMs(key),
        },
      };
    },
    clock,
    async close() {},
  };
  return target;
});

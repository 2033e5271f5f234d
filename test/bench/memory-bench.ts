// Part three (child-process entry, so RSS is this run's alone): a million checks over a hundred thousand
// users through the full chain on the memory cache + SQLite, without HTTP; reports RSS and the cache's
// entry count as it goes, to show memory stays bounded by maxEntries.
import { createBillingCore } from '../../lib/billing-core.js';
import { MemoryBillingCache } from '../../lib/cache/memory-cache.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { createSqliteKnex } from '../helpers/sqlite.js';
import { readConfig } from './config.js';
import { seedUsersInBulk } from './memory-seed.js';
import { round } from './stats.js';
import { benchSubject } from './subject.js';

export interface MemorySample {
  checks: number;
  rssMb: number;
  heapUsedMb: number;
  cacheEntries: number;
}

export interface MemoryResults {
  type: 'memory';
  requests: number;
  users: number;
  /** Consecutive checks per user visit (a client's burst of requests). */
  checksPerVisit: number;
  maxEntries: number;
  /** Visits in progress at once. */
  concurrency: number;
  allowed: number;
  denied: number;
  checksPerSec: number;
  seedSeconds: number;
  /** After seeding, before the first check. */
  before: MemorySample;
  /** Taken every tenth of the run; the last is the end state. */
  samples: MemorySample[];
  peakCacheEntries: number;
  boundedByMaxEntries: boolean;
}

const CONCURRENCY = 50;
const MB = 1024 * 1024;
const USER_PREFIX = 'mem-';

function sample(checks: number, cache: MemoryBillingCache): MemorySample {
  const usage = process.memoryUsage();
  return { checks, rssMb: round(usage.rss / MB, 1), heapUsedMb: round(usage.heapUsed / MB, 1), cacheEntries: cache.size };
}

/** Every user once, in an order fixed by a seeded LCG (Fisher–Yates), so runs are repeatable. */
function shuffledUsers(users: number): Uint32Array {
  const order = new Uint32Array(users);
  for (let i = 0; i < users; i++) order[i] = i;
  let state = 0x2545f491;
  for (let i = users - 1; i > 0; i--) {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    const j = state % (i + 1);
    const swap = order[i] as number;
    order[i] = order[j] as number;
    order[j] = swap;
  }
  return order;
}

async function main(): Promise<void> {
  const { memoryRequests: requests, memoryUsers: users, memoryMaxEntries: maxEntries } = readConfig();
  // Each user is visited once, with a burst of checks: the first misses (store reads, then cache
  // fills), the rest hit. Visits interleave, and the working set (6 entries per user) is many times
  // maxEntries, so eviction runs all the time.
  const checksPerVisit = Math.max(1, Math.round(requests / users));
  const knex = await createSqliteKnex();
  const seedStarted = performance.now();
  await seedUsersInBulk(knex, USER_PREFIX, users);
  const seedSeconds = round((performance.now() - seedStarted) / 1000, 1);
  const cache = new MemoryBillingCache({ maxEntries });
  const core = createBillingCore({ store: new KnexBillingStore(knex), cache });
  const before = sample(0, cache);

  const order = shuffledUsers(users);
  const samples: MemorySample[] = [];
  const sampleEvery = Math.max(1, Math.floor(requests / 10));
  let nextVisit = 0;
  let done = 0;
  let allowed = 0;
  let peakCacheEntries = cache.size;
  const startedAt = performance.now();
  const worker = async (): Promise<void> => {
    while (done < requests && nextVisit < users) {
      const userId = `${USER_PREFIX}${order[nextVisit++] as number}`;
      for (let i = 0; i < checksPerVisit && done < requests; i++) {
        // A new subject object per check, as an application's authentication builds one per request.
        const result = await core.check(benchSubject(userId));
        if (result.allowed) allowed++;
        done++;
        if (cache.size > peakCacheEntries) peakCacheEntries = cache.size;
        if (done % sampleEvery === 0) samples.push(sample(done, cache));
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsedS = (performance.now() - startedAt) / 1000;
  await core.close();
  const results: MemoryResults = {
    type: 'memory',
    requests: done,
    users,
    checksPerVisit,
    maxEntries,
    concurrency: CONCURRENCY,
    allowed,
    denied: done - allowed,
    checksPerSec: Math.round(done / elapsedS),
    seedSeconds,
    before,
    samples,
    peakCacheEntries,
    boundedByMaxEntries: peakCacheEntries <= maxEntries,
  };
  await cache.close();
  await knex.destroy();
  // Done: exit once the parent has the results (the IPC channel would keep this process alive).
  process.send?.(results, () => process.exit(0));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

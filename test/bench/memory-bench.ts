// Part three (child-process entry, so RSS is this run's alone): a million checks over a hundred thousand
// users through the full chain on the memory cache + SQLite, without HTTP; reports RSS and the cache's
// entry count as it goes, to show memory stays bounded by maxEntries.
import { createBillingCore } from '../../lib/billing-core.js';
import { MemoryBillingCache } from '../../lib/cache/memory-cache.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { createSqliteKnex } from '../helpers/sqlite.js';
import { readConfig } from './config.js';
import { round } from './stats.js';
import { benchSubject, seedBenchUser } from './subject.js';

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
  maxEntries: number;
  /** Checks in flight at once. */
  concurrency: number;
  allowed: number;
  denied: number;
  checksPerSec: number;
  /** After seeding, before the first check. */
  before: MemorySample;
  /** Taken every tenth of the run; the last is the end state. */
  samples: MemorySample[];
  peakCacheEntries: number;
  boundedByMaxEntries: boolean;
}

const CONCURRENCY = 50;
const MB = 1024 * 1024;

function sample(checks: number, cache: MemoryBillingCache): MemorySample {
  const usage = process.memoryUsage();
  return { checks, rssMb: round(usage.rss / MB, 1), heapUsedMb: round(usage.heapUsed / MB, 1), cacheEntries: cache.size };
}

/** A fixed-seed LCG: the same spread of users on every run, cheaper than Math.random and repeatable. */
function userPicker(users: number): () => number {
  let state = 0x2545f491;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state % users;
  };
}

async function main(): Promise<void> {
  const config = readConfig();
  const { memoryRequests: requests, memoryUsers: users, memoryMaxEntries: maxEntries } = config;
  const knex = await createSqliteKnex();
  const cache = new MemoryBillingCache({ maxEntries });
  const core = createBillingCore({ store: new KnexBillingStore(knex), cache });
  for (let u = 0; u < users; u++) await seedBenchUser(core, `mem-${u}`);
  global.gc?.();
  const before = sample(0, cache);

  const next = userPicker(users);
  const samples: MemorySample[] = [];
  const sampleEvery = Math.max(1, Math.floor(requests / 10));
  let issued = 0;
  let done = 0;
  let allowed = 0;
  let peakCacheEntries = cache.size;
  const startedAt = performance.now();
  const worker = async (): Promise<void> => {
    while (issued < requests) {
      issued++;
      // A new subject object per check, as an application's authentication builds one per request.
      const result = await core.check(benchSubject(`mem-${next()}`));
      if (result.allowed) allowed++;
      done++;
      if (cache.size > peakCacheEntries) peakCacheEntries = cache.size;
      if (done % sampleEvery === 0) samples.push(sample(done, cache));
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsedS = (performance.now() - startedAt) / 1000;
  await core.close();
  const results: MemoryResults = {
    type: 'memory',
    requests,
    users,
    maxEntries,
    concurrency: CONCURRENCY,
    allowed,
    denied: done - allowed,
    checksPerSec: Math.round(done / elapsedS),
    before,
    samples,
    peakCacheEntries,
    boundedByMaxEntries: peakCacheEntries <= maxEntries,
  };
  await cache.close();
  await knex.destroy();
  process.send?.(results);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

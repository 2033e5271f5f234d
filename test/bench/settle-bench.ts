// Part two: settlements per second into PostgreSQL (with the Redis cache updated after each commit),
// a fixed number in flight for a fixed time, once spread over distinct users and once on one hot user.
import type { Knex } from 'knex';
import type { Redis } from 'ioredis';
import { createBillingCore } from '../../lib/billing-core.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import type { BenchConfig } from './config.js';
import { Samples, round } from './stats.js';
import { benchSubject, seedBenchUser } from './subject.js';

export interface SettleRun {
  users: number;
  concurrency: number;
  settlements: number;
  perSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface SettleResults {
  /** Each worker settles for its own user: rows of different users never wait on each other. */
  distinctUsers: SettleRun;
  /** Every settlement debits the same balance row: PostgreSQL serialises them on the row lock. */
  oneUser: SettleRun;
}

/** Cost of one settlement: a small exact amount, like a short completion. */
const COST_USD = '0.00012345';

export async function runSettleBench(config: BenchConfig, knex: Knex, redis: Redis, redisPrefix: string): Promise<SettleResults> {
  const core = createBillingCore({ store: new KnexBillingStore(knex), cache: new RedisBillingCache(redis, { prefix: redisPrefix }) });
  try {
    const concurrency = config.settleConcurrency;
    const users = Array.from({ length: concurrency }, (_, i) => `settle-user-${i}`);
    for (const user of users) await seedBenchUser(core, user);
    let sequence = 0;
    const run = async (userOf: (worker: number) => string, label: string): Promise<SettleRun> => {
      const latencies = new Samples();
      const deadline = performance.now() + config.settleDurationS * 1000;
      const startedAt = performance.now();
      const worker = async (w: number): Promise<void> => {
        const subject = benchSubject(userOf(w));
        while (performance.now() < deadline) {
          const t0 = performance.now();
          await core.settle({ requestId: `bench-${label}-${sequence++}`, subject, costUsd: COST_USD, model: 'bench-model', inputTokens: 100, outputTokens: 20 });
          latencies.push(performance.now() - t0);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
      const elapsedS = (performance.now() - startedAt) / 1000;
      const [p50Ms = Number.NaN, p99Ms = Number.NaN] = latencies.percentiles(50, 99);
      return {
        users: new Set(Array.from({ length: concurrency }, (_, w) => userOf(w))).size,
        concurrency,
        settlements: latencies.length,
        perSec: Math.round(latencies.length / elapsedS),
        p50Ms: round(p50Ms, 2),
        p99Ms: round(p99Ms, 2),
      };
    };
    const distinctUsers = await run((w) => users[w] as string, 'distinct');
    const oneUser = await run(() => users[0] as string, 'one');
    return { distinctUsers, oneUser };
  } finally {
    await core.close();
  }
}

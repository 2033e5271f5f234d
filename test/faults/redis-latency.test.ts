// Redis answering 200 ms late: commandTimeout bounds what each cache call may cost, so a request gains
// at most CACHE_CALLS_PER_REQUEST × commandTimeout (plus its store reads), not the full Redis latency.
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { BillingCore } from '../../lib/billing-core.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { recommendedRedisOptions } from '../../lib/cache/redis-client-options.js';
import type { BillingCache, BillingStore } from '../../lib/types.js';
import { REDIS_URL } from '../helpers/services.js';
import { CACHE_CALLS_PER_REQUEST, COMMAND_TIMEOUT_MS, createFaultEnv, latencySummary, percentile, report, waitFor, type FaultEnv } from './fault-env.js';
import { PLATFORM, makeUsers, seedUsers, subjectOf, type FaultUser } from './workload.js';

const LATENCY_MS = 200;
const REQUESTS = 25;
/** The contrast run pays 400 ms per request; a few are enough to show it. */
const CONTRAST_REQUESTS = 6;

/** Wraps a backend so that the time spent inside it is summed (calls bound to the real instance: private fields). */
function timed<T extends object>(real: T): { target: T; spentMs: () => number; reset: () => void } {
  let spent = 0;
  const target = new Proxy(real, {
    get(obj, prop) {
      const value = Reflect.get(obj, prop) as unknown;
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        const started = performance.now();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(obj, args);
        } finally {
          spent += performance.now() - started;
        }
      };
    },
  });
  return { target, spentMs: () => spent, reset: () => void (spent = 0) };
}

interface Measured {
  totalMs: number[];
  cacheMs: number[];
  storeMs: number[];
  balanceSources: string[];
  rpm: string[];
}

describe('faults: Redis answering with 200 ms latency', function () {
  this.timeout(60_000);
  let env: FaultEnv;
  let user: FaultUser;

  before(async function () {
    env = await createFaultEnv(this);
    [user] = makeUsers(1, 'slow') as [FaultUser];
    await seedUsers(env.directStore, [user]);
  });

  after(async () => {
    await env?.cleanup();
  });

  /** `count` checks one after the other, each with the time it spent in the cache and in the store. */
  async function measure(
    core: BillingCore,
    cache: ReturnType<typeof timed<BillingCache>>,
    store: ReturnType<typeof timed<BillingStore>>,
    count = REQUESTS,
  ): Promise<Measured> {
    const m: Measured = { totalMs: [], cacheMs: [], storeMs: [], balanceSources: [], rpm: [] };
    for (let i = 0; i < count; i++) {
      cache.reset();
      store.reset();
      const started = performance.now();
      const result = await core.check(subjectOf(user));
      m.totalMs.push(performance.now() - started);
      m.cacheMs.push(cache.spentMs());
      m.storeMs.push(store.spentMs());
      expect(result.allowed).to.equal(true);
      m.balanceSources.push(result.checks.find((c) => c.check === 'balance')?.source ?? 'none');
      m.rpm.push(result.checks.find((c) => c.check === 'rpm')?.outcome ?? 'none');
    }
    return m;
  }

  async function warmCache(core: BillingCore): Promise<void> {
    await core.check(subjectOf(user));
    await waitFor(
      'the entries to be cached',
      async () => {
        const read = await env.directCache.readBatch({ userId: user.id, balance: true, apiKeyId: user.keyId, platform: PLATFORM });
        return Boolean(read.balance?.hit && read.apiKeyWindows?.hit && read.platformQuota?.hit);
      },
      3000,
    );
  }

  it(`recommended options: each cache call gives up after commandTimeout (${COMMAND_TIMEOUT_MS} ms), so a request gains at most ${CACHE_CALLS_PER_REQUEST} × commandTimeout + its store reads`, async () => {
    const cache = timed<BillingCache>(env.cache);
    const store = timed<BillingStore>(env.store);
    const core = env.makeCore({ cache: cache.target, store: store.target });
    await warmCache(core);
    const baseline = await measure(core, cache, store);
    expect(
      baseline.balanceSources.every((s) => s === 'cache'),
      'baseline reads from the cache',
    ).to.equal(true);

    await env.redisProxy.latency(LATENCY_MS);
    let slow: Measured;
    try {
      slow = await measure(core, cache, store);
    } finally {
      await env.redisProxy.restore();
    }

    // The bound, per request: its cache calls together wait at most CACHE_CALLS_PER_REQUEST ×
    // commandTimeout (+ 30 ms timer and scheduling slack each); everything else it spends is the
    // store reads it falls back to. Without the timeout each call would wait the full 200 ms.
    const cacheBound = CACHE_CALLS_PER_REQUEST * (COMMAND_TIMEOUT_MS + 30);
    const baselineP50 = percentile(baseline.totalMs, 50);
    const added = slow.totalMs.map((ms) => ms - baselineP50);
    report(`baseline (proxy passing): ${latencySummary(baseline.totalMs)}`);
    report(`Redis +${LATENCY_MS} ms: ${latencySummary(slow.totalMs)}; added over baseline p50: ${latencySummary(added)}`);
    report(`  time in cache calls per request: ${latencySummary(slow.cacheMs)} (bound ${cacheBound} ms); in store reads: ${latencySummary(slow.storeMs)}`);
    report(`  balance from: ${[...new Set(slow.balanceSources)].join(', ')}; rpm: ${[...new Set(slow.rpm)].join(', ')}`);

    expect(
      slow.balanceSources.every((s) => s === 'store'),
      'every balance read fell back to the store',
    ).to.equal(true);
    expect(
      slow.rpm.every((s) => s === 'failed_open'),
      'every RPM check failed open',
    ).to.equal(true);
    for (let i = 0; i < REQUESTS; i++) {
      expect(slow.cacheMs[i], `request ${i}: ms spent waiting for the cache`).to.be.below(cacheBound);
      // Warm, its read also offered to count RPM: after that read timed out, RPM fails open without
      // a second call (which would wait again, and might count the request twice).
      expect(slow.cacheMs[i], `request ${i}: one timed-out cache call, not two`).to.be.below(COMMAND_TIMEOUT_MS + 30);
      expect(added[i]!, `request ${i}: added latency beyond its cache bound and store reads, ms`).to.be.below(cacheBound + slow.storeMs[i]! + 50);
    }
  });

  it(`contrast: with commandTimeout above the latency, each warm request pays the full ${LATENCY_MS} ms of its one round trip`, async () => {
    const patient = new Redis(env.redisProxy.urlFor(REDIS_URL), recommendedRedisOptions({ commandTimeout: 1000, lazyConnect: true }));
    patient.on('error', () => {});
    await patient.connect();
    try {
      const cache = timed<BillingCache>(new RedisBillingCache(patient, { prefix: env.prefix }));
      const store = timed<BillingStore>(env.store);
      const core = env.makeCore({ cache: cache.target, store: store.target });
      await warmCache(core);
      await env.redisProxy.latency(LATENCY_MS);
      let slow: Measured;
      try {
        slow = await measure(core, cache, store, CONTRAST_REQUESTS);
      } finally {
        await env.redisProxy.restore();
      }
      report(
        `Redis +${LATENCY_MS} ms, commandTimeout 1000 ms: ${latencySummary(slow.totalMs)}; in cache calls ${latencySummary(slow.cacheMs)}; balance from ${[...new Set(slow.balanceSources)].join(', ')}`,
      );
      // The proxy really delays every answer: the cache is still used, and it costs the full latency
      // once — a warm request's read also counts RPM (one round trip), and nothing waits twice.
      expect(slow.balanceSources.every((s) => s === 'cache')).to.equal(true);
      expect(Math.min(...slow.cacheMs)).to.be.at.least(LATENCY_MS - 5);
      expect(Math.max(...slow.cacheMs)).to.be.below(2 * LATENCY_MS);
    } finally {
      patient.disconnect();
    }
  });
});

// The cost of live stream metering (docs/stream-metering.md): holds grown slice by slice on Redis, by
// requests in flight at once, against a PING on the same client in the same run. Reported per
// extension and per 1,000 streamed tokens at the gateway's default slice (256 tokens).
import type { Redis } from 'ioredis';
import type { Knex } from 'knex';
import { createBillingCore, KnexBillingStore, RedisBillingCache } from '../../lib/index.js';
import type { BenchConfig } from './config.js';
import { ownCpuSeconds, redisCpuSeconds } from './cpu.js';
import { Samples } from './stats.js';
import { benchSubject, seedBenchUser } from './subject.js';

/** Tokens per slice: the example gateway's default METERING_SLICE_TOKENS. */
export const SLICE_TOKENS = 256;
/** Extensions of one hold before its request ends (a stream of 64 slices, about 16,000 tokens). */
const EXTENSIONS_PER_STREAM = 64;
/** What one slice adds; tiny, so no limit is ever reached. */
const SLICE_USD = '0.000001';

export interface MeteringRun {
  streams: number;
  extensionsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU of this process and of Redis per extension, µs. */
  nodeUs: number;
  redisUs: number;
}

export interface MeteringResults {
  sliceTokens: number;
  pingP50Ms: number;
  runs: MeteringRun[];
}

export async function runMeteringBench(config: BenchConfig, knex: Knex, redis: Redis, redisPrefix: string): Promise<MeteringResults> {
  const core = createBillingCore({ store: new KnexBillingStore(knex), cache: new RedisBillingCache(redis, { prefix: redisPrefix }) });
  const durationMs = config.settleDurationS * 1000;
  try {
    const pings = new Samples();
    for (let i = 0; i < 2000; i++) {
      const t0 = performance.now();
      await redis.ping();
      pings.push(performance.now() - t0);
    }
    const runs: MeteringRun[] = [];
    for (const streams of [1, 20]) {
      // One user per stream, like independent callers; each stream extends its own hold in turn.
      const users = Array.from({ length: streams }, (_, i) => `metering-${streams}-${i}`);
      for (const user of users) await seedBenchUser(core, user);
      const latencies = new Samples();
      let extensions = 0;
      const [node0, redis0] = [ownCpuSeconds(), await redisCpuSeconds(redis)];
      const deadline = performance.now() + durationMs;
      const startedAt = performance.now();
      await Promise.all(
        users.map(async (user) => {
          const subject = benchSubject(user);
          while (performance.now() < deadline) {
            const decision = await core.check(subject, { estimateUsd: SLICE_USD });
            if (!decision.allowed || !decision.reservation) throw new Error(`metering bench: no hold for ${user}`);
            for (let i = 0; i < EXTENSIONS_PER_STREAM && performance.now() < deadline; i++) {
              const t0 = performance.now();
              const grown = await decision.reservation.extend(SLICE_USD);
              latencies.push(performance.now() - t0);
              if (!grown.extended) throw new Error(`metering bench: extension refused (${JSON.stringify(grown)})`);
              extensions++;
            }
            decision.reservation.release();
          }
        }),
      );
      const seconds = (performance.now() - startedAt) / 1000;
      const [node1, redis1] = [ownCpuSeconds(), await redisCpuSeconds(redis)];
      const [p50, p99] = latencies.percentiles(50, 99);
      runs.push({
        streams,
        extensionsPerSec: Math.round(extensions / seconds),
        p50Ms: p50!,
        p99Ms: p99!,
        nodeUs: ((node1 - node0) * 1e6) / extensions,
        redisUs: ((redis1 - redis0) * 1e6) / extensions,
      });
    }
    return { sliceTokens: SLICE_TOKENS, pingP50Ms: pings.percentiles(50)[0]!, runs };
  } finally {
    await core.close();
  }
}

/** The report's lines: per extension, and per 1,000 streamed tokens at the slice size. */
export function meteringTable(results: MeteringResults, durationS: number): string[] {
  const perThousand = 1000 / results.sliceTokens;
  const lines = [
    `Stream metering on Redis: holds grown by one slice at a time, ${durationS} s per run; a slice is ${results.sliceTokens} tokens, so 1,000 streamed tokens take ${perThousand.toFixed(2)} extensions (one script each); PING p50 ${results.pingP50Ms.toFixed(3)} ms on the same client:`,
    '',
    '| streams at once | extensions/s | p50 ms | p99 ms | p50 ÷ PING p50 | Node CPU µs | Redis CPU µs | per 1,000 tokens: Node + Redis CPU µs, wait ms |',
    '|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const run of results.runs) {
    lines.push(
      `| ${run.streams} | ${run.extensionsPerSec} | ${run.p50Ms.toFixed(3)} | ${run.p99Ms.toFixed(3)} | ${(run.p50Ms / results.pingP50Ms).toFixed(2)} | ${run.nodeUs.toFixed(1)} | ${run.redisUs.toFixed(1)} | ${(perThousand * run.nodeUs).toFixed(0)} + ${(perThousand * run.redisUs).toFixed(0)}, ${(perThousand * run.p50Ms).toFixed(2)} |`,
    );
  }
  return lines;
}

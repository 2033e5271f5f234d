// Part one: the apps, each in a fresh server process per round, loaded in turns within every round
// (the order rotating every round and every turn) at a fixed connection count.
import type { Redis } from 'ioredis';
import { APP_IDS, type AppId } from './apps.js';
import type { BenchConfig } from './config.js';
import { measureCpu, type CpuPerRequest } from './cpu.js';
import { runLoad, type LoadResult } from './load.js';
import { startChild, type Child } from './processes.js';
import type { ServerReady } from './server.js';
import { median, round } from './stats.js';
import { Turns, type MeasuredLoad } from './turns.js';

export interface AppSummary {
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Medians of the CPU spent per request by the server process, Redis (shared server: includes other clients) and autocannon. */
  cpu: CpuPerRequest;
}

export interface Ratio {
  /** Median over rounds of the ratio measured within each round (whose apps took turns of a second or so). */
  median: number;
  perRound: number[];
  target: string;
  met: boolean;
}

export interface HttpResults {
  rounds: { round: number; order: AppId[]; results: Record<AppId, MeasuredLoad> }[];
  /** Medians over rounds. */
  apps: Record<AppId, AppSummary>;
  ratios: {
    'b/a': Ratio;
    'c/a': Ratio;
    'c/d': Ratio;
    /** p99 of (c) over p99 of (a). */
    'p99 c/a': Ratio;
    /** Metrics on vs off (docs/operations.md). */
    'bm/b': Ratio;
    /** Reserving an estimate vs not. */
    'cr/c': Ratio;
    /** Reserving with 2,000 holds of the user open vs none: constant-time holds. */
    'cr2000/cr': Ratio;
    /** Redis CPU per request, reserving vs not. */
    'Redis CPU cr/c': Ratio;
    /** Redis CPU per request with 2,000 holds open vs none. */
    'Redis CPU cr2000/cr': Ratio;
    /** Settling every request before answering vs not: what billing each request costs a gateway (group commit). */
    'cs/c': Ratio;
    /** The chain without the RateLimit fields vs bare Koa: what the checks alone cost. */
    'bf/a': Ratio;
    /** The Redis chain without the RateLimit fields vs rate-limiter-flexible, which sends none. */
    'cf/d': Ratio;
    /** Bare Koa with one microsecond of work per request vs without: the yardstick of the other ratios. */
    'w/a': Ratio;
    /** Bare Koa sending (b)'s two RateLimit fields as fixed strings vs not: what the fields' bytes alone cost. */
    'af/a': Ratio;
    /** The chain vs bare Koa sending the same fields: what the checks (and building the fields) cost. */
    'b/af': Ratio;
    /** rate-limiter-flexible alone vs bare Koa: one Redis command per request, nothing else. */
    'd/a': Ratio;
    /** (c) against rate-limiter-flexible with its writes coalesced the same way: the work per request with the same transport. */
    'c/dw': Ratio;
  };
}

export interface HttpSettings {
  pgSchema: string;
  redisPrefix: string;
}

/** What test/bench/server.ts reads from its environment to run `id`. */
export function serverEnv(id: AppId, config: BenchConfig, settings: HttpSettings): Record<string, string> {
  return {
    BENCH_APP: id,
    BENCH_PG_SCHEMA: settings.pgSchema,
    BENCH_REDIS_PREFIX: settings.redisPrefix,
    BENCH_AUTO_PIPELINING: config.autoPipelining ? '1' : '0',
  };
}

/** A started server of one app, warmed up. */
interface WarmServer {
  id: AppId;
  child: Child;
  url: string;
}

/**
 * Starts a fresh server process for `id` and gives it `warmupS` of unmeasured load (JIT, pools, the
 * cache). A fresh process per app per round: the same code in two processes can differ by ~15 % for
 * the whole life of each (what the JIT happened to optimise, where the heap landed), so one process
 * per app for the whole run would tilt every round of that app the same way.
 */
async function startWarmServer(id: AppId, config: BenchConfig, settings: HttpSettings): Promise<WarmServer> {
  const child = startChild('./server.ts', serverEnv(id, config, settings), config.profile.has(id));
  try {
    const { port } = await child.message<ServerReady>('ready');
    const url = `http://127.0.0.1:${port}/v1/chat/completions`;
    assertClean(id, await runLoad(url, config.connections, config.warmupS));
    return { id, child, url };
  } catch (err) {
    await child.stop();
    throw err;
  }
}

/**
 * One round: every app's server started and warmed up first (an idle server costs nothing while
 * the others run), then the apps take turns of `sliceS` seconds until each has had `durationS`,
 * the order rotating every turn so no app always follows the same one.
 */
async function runRound(order: readonly AppId[], config: BenchConfig, settings: HttpSettings, redis: Redis): Promise<Record<AppId, MeasuredLoad>> {
  const servers: WarmServer[] = [];
  try {
    for (const id of order) servers.push(await startWarmServer(id, config, settings));
    const turns = new Map(order.map((id) => [id, new Turns()]));
    for (let turn = 0; turn < config.durationS / config.sliceS; turn++) {
      for (let k = 0; k < servers.length; k++) {
        const { id, child, url } = servers[(k + turn) % servers.length]!;
        const app = turns.get(id)!;
        if (config.turnWarmupMs > 0) assertClean(id, await runLoad(url, config.connections, config.turnWarmupMs / 1000));
        const { result, cpu } = await measureCpu(child.process.pid ?? -1, redis, () => runLoad(url, config.connections, config.sliceS, app.latencies));
        assertClean(id, result);
        app.add(result, cpu);
      }
    }
    return Object.fromEntries(order.map((id) => [id, turns.get(id)!.result()])) as Record<AppId, MeasuredLoad>;
  } finally {
    await Promise.all(servers.map((server) => server.child.stop()));
  }
}

export function assertClean(id: AppId, result: LoadResult): void {
  // A refused or failed request is not the path being measured: stop rather than report it.
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(`${id}: ${result.non2xx} non-2xx responses, ${result.errors} errors, ${result.timeouts} timeouts — the benchmark path must answer 200`);
  }
}

function ratio(perRound: number[], target: string, met: (value: number) => boolean): Ratio {
  const value = median(perRound);
  return { median: round(value, 3), perRound: perRound.map((r) => round(r, 3)), target, met: met(value) };
}

export async function runHttpBench(config: BenchConfig, settings: HttpSettings, redis: Redis, log: (line: string) => void): Promise<HttpResults> {
  const rounds: HttpResults['rounds'] = [];
  for (let r = 0; r < config.rounds; r++) {
    const order = APP_IDS.map((_, i) => APP_IDS[(i + r) % APP_IDS.length] as AppId);
    const results = await runRound(order, config, settings, redis);
    for (const id of order) {
      const { reqPerSec, p50Ms, p99Ms, cpu } = results[id];
      log(
        `round ${r + 1}/${config.rounds} ${id}: ${Math.round(reqPerSec)} req/s, p50 ${p50Ms.toFixed(2)} ms, p99 ${p99Ms.toFixed(2)} ms; CPU µs/request: server ${cpu.serverUs}, Redis ${cpu.redisUs}, autocannon ${cpu.loadGeneratorUs}`,
      );
    }
    rounds.push({ round: r + 1, order, results });
  }
  const apps = {} as Record<AppId, AppSummary>;
  for (const id of APP_IDS) {
    apps[id] = {
      reqPerSec: Math.round(median(rounds.map((r) => r.results[id].reqPerSec))),
      p50Ms: round(median(rounds.map((r) => r.results[id].p50Ms)), 2),
      p99Ms: round(median(rounds.map((r) => r.results[id].p99Ms)), 2),
      cpu: {
        serverUs: round(median(rounds.map((r) => r.results[id].cpu.serverUs)), 1),
        redisUs: round(median(rounds.map((r) => r.results[id].cpu.redisUs)), 1),
        loadGeneratorUs: round(median(rounds.map((r) => r.results[id].cpu.loadGeneratorUs)), 1),
      },
    };
  }
  const per = (f: (r: Record<AppId, MeasuredLoad>) => number) => rounds.map((r) => f(r.results));
  return {
    rounds,
    apps,
    ratios: {
      'b/a': ratio(
        per((r) => r['chain-memory'].reqPerSec / r.bare.reqPerSec),
        '>= 0.90',
        (v) => v >= 0.9,
      ),
      'c/a': ratio(
        per((r) => r['chain-redis'].reqPerSec / r.bare.reqPerSec),
        '>= 0.70',
        (v) => v >= 0.7,
      ),
      'c/d': ratio(
        per((r) => r['chain-redis'].reqPerSec / r['rlf-redis'].reqPerSec),
        '>= 1.00',
        (v) => v >= 1.0,
      ),
      'p99 c/a': ratio(
        per((r) => r['chain-redis'].p99Ms / r.bare.p99Ms),
        '<= 2.00',
        (v) => v <= 2.0,
      ),
      'bm/b': ratio(
        per((r) => r['chain-memory-metrics'].reqPerSec / r['chain-memory'].reqPerSec),
        '>= 0.95',
        (v) => v >= 0.95,
      ),
      'cr/c': ratio(
        per((r) => r['chain-redis-reserve'].reqPerSec / r['chain-redis'].reqPerSec),
        '>= 0.80',
        (v) => v >= 0.8,
      ),
      'cr2000/cr': ratio(
        per((r) => r['chain-redis-reserve-2000'].reqPerSec / r['chain-redis-reserve'].reqPerSec),
        '>= 0.90',
        (v) => v >= 0.9,
      ),
      'Redis CPU cr/c': ratio(
        per((r) => r['chain-redis-reserve'].cpu.redisUs / r['chain-redis'].cpu.redisUs),
        '<= 2.00',
        (v) => v <= 2,
      ),
      'Redis CPU cr2000/cr': ratio(
        per((r) => r['chain-redis-reserve-2000'].cpu.redisUs / r['chain-redis-reserve'].cpu.redisUs),
        'report',
        () => true,
      ),
      'cs/c': ratio(
        per((r) => r['chain-redis-settle'].reqPerSec / r['chain-redis'].reqPerSec),
        '>= 0.50',
        (v) => v >= 0.5,
      ),
      'bf/a': ratio(
        per((r) => r['chain-memory-no-fields'].reqPerSec / r.bare.reqPerSec),
        'report',
        () => true,
      ),
      'cf/d': ratio(
        per((r) => r['chain-redis-no-fields'].reqPerSec / r['rlf-redis'].reqPerSec),
        'report',
        () => true,
      ),
      'w/a': ratio(
        per((r) => r['bare-1us'].reqPerSec / r.bare.reqPerSec),
        'report',
        () => true,
      ),
      'af/a': ratio(
        per((r) => r['bare-fields'].reqPerSec / r.bare.reqPerSec),
        'report',
        () => true,
      ),
      'b/af': ratio(
        per((r) => r['chain-memory'].reqPerSec / r['bare-fields'].reqPerSec),
        'report',
        () => true,
      ),
      'd/a': ratio(
        per((r) => r['rlf-redis'].reqPerSec / r.bare.reqPerSec),
        'report',
        () => true,
      ),
      'c/dw': ratio(
        per((r) => r['chain-redis'].reqPerSec / r['rlf-redis-coalesced'].reqPerSec),
        'report',
        () => true,
      ),
    },
  };
}

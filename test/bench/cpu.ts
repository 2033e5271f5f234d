// CPU accounting for one load run: the server process (from /proc), Redis (INFO cpu) and the load
// generator (this process), so a result says where each request's CPU time went, not only how fast it was.
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

const CLOCK_TICKS_PER_SEC = 100; // USER_HZ on Linux; /proc reports utime and stime in these ticks.

/** user + system CPU seconds of a process, or NaN where /proc is not available. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC;
  } catch {
    return Number.NaN;
  }
}

/** Redis's own CPU seconds (main thread and others), from INFO cpu. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const read = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return read('used_cpu_user') + read('used_cpu_sys');
}

export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

export interface CpuPerRequest {
  /** µs of CPU per completed request. */
  serverUs: number;
  redisUs: number;
  loadGeneratorUs: number;
}

/** CPU seconds spent by each party (added up over the turns of a measurement). */
export interface CpuSeconds {
  server: number;
  redis: number;
  loadGenerator: number;
}

/** Runs `work` and returns its result with the CPU seconds each party spent meanwhile. */
export async function measureCpu<T>(serverPid: number, redis: Redis | undefined, work: () => Promise<T>): Promise<{ result: T; cpu: CpuSeconds }> {
  const before = { server: processCpuSeconds(serverPid), redis: redis ? await redisCpuSeconds(redis) : Number.NaN, own: ownCpuSeconds() };
  const result = await work();
  const after = { server: processCpuSeconds(serverPid), redis: redis ? await redisCpuSeconds(redis) : Number.NaN, own: ownCpuSeconds() };
  return { result, cpu: { server: after.server - before.server, redis: after.redis - before.redis, loadGenerator: after.own - before.own } };
}

export function cpuPerRequest(cpu: CpuSeconds, requests: number): CpuPerRequest {
  const perRequest = (seconds: number) => Math.round(((seconds * 1e6) / Math.max(1, requests)) * 10) / 10;
  return { serverUs: perRequest(cpu.server), redisUs: perRequest(cpu.redis), loadGeneratorUs: perRequest(cpu.loadGenerator) };
}

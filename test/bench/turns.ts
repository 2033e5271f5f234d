// One app's measurement in one round, added up over its turns (test/bench/http-bench.ts): requests
// over seconds, latency percentiles over every response, CPU over every request.
import { cpuPerRequest, type CpuPerRequest, type CpuSeconds } from './cpu.js';
import type { LoadResult } from './load.js';
import { Samples } from './stats.js';

/** One app in one round, over all its turns. */
export interface MeasuredLoad {
  requests: number;
  seconds: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  cpu: CpuPerRequest;
}

export class Turns {
  requests = 0;
  seconds = 0;
  readonly cpu: CpuSeconds = { server: 0, redis: 0, loadGenerator: 0 };
  /** Every 2xx latency of every turn (ms); runLoad adds to it directly. */
  readonly latencies = new Samples();

  add(load: LoadResult, cpu: CpuSeconds): void {
    this.requests += load.requests;
    this.seconds += load.seconds;
    this.cpu.server += cpu.server;
    this.cpu.redis += cpu.redis;
    this.cpu.loadGenerator += cpu.loadGenerator;
  }

  result(): MeasuredLoad {
    const [p50Ms = Number.NaN, p99Ms = Number.NaN] = this.latencies.percentiles(50, 99);
    return {
      requests: this.requests,
      seconds: this.seconds,
      reqPerSec: this.requests / this.seconds,
      p50Ms,
      p99Ms,
      cpu: cpuPerRequest(this.cpu, this.requests),
    };
  }
}

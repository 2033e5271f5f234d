// One fixed-duration load run with autocannon from this (the parent) process, with every 2xx latency
// recorded at sub-millisecond resolution (autocannon's own histogram rounds to whole milliseconds).
import autocannon from 'autocannon';
import { Samples } from './stats.js';

export interface LoadResult {
  requests: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Responses other than 2xx; any at all means the app did not do what is measured. */
  non2xx: number;
  errors: number;
  timeouts: number;
}

export function runLoad(url: string, connections: number, durationS: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const latencies = new Samples();
    const tracker = autocannon({ url, connections, duration: durationS, pipelining: 1 }, (err, result) => {
      if (err) return reject(err);
      const [p50Ms = Number.NaN, p99Ms = Number.NaN] = latencies.percentiles(50, 99);
      const completed = result.requests.total;
      resolve({
        requests: completed,
        reqPerSec: completed / (result.duration || durationS),
        p50Ms,
        p99Ms,
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
      });
    });
    tracker.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs);
    });
  });
}

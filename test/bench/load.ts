// Load runs with autocannon from this (the parent) process: for a fixed duration, with every 2xx
// latency recorded at sub-millisecond resolution (autocannon's own histogram rounds to whole
// milliseconds), or for a fixed number of requests.
import autocannon from 'autocannon';
import type { Samples } from './stats.js';

export interface LoadResult {
  requests: number;
  /** How long the load ran (autocannon's start to finish), in seconds. */
  seconds: number;
  /** Responses other than 2xx; any at all means the app did not do what is measured. */
  non2xx: number;
  errors: number;
  timeouts: number;
}

/** Loads `url` for `durationS` seconds, adding every 2xx latency (ms) to `latencies` (several runs may share one). */
export function runLoad(url: string, connections: number, durationS: number, latencies?: Samples): Promise<LoadResult> {
  return load({ url, connections, duration: durationS }, latencies);
}

/** Sends exactly `amount` requests to `url` over `connections` (however long that takes). */
export function runRequests(url: string, connections: number, amount: number): Promise<LoadResult> {
  return load({ url, connections, amount });
}

function load(options: { url: string; connections: number; duration?: number; amount?: number }, latencies?: Samples): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const tracker = autocannon({ ...options, pipelining: 1 }, (err, result) => {
      if (err) return reject(err);
      resolve({
        requests: result.requests.total,
        seconds: (result.finish.getTime() - result.start.getTime()) / 1000 || (options.duration ?? 0),
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
      });
    });
    if (latencies) {
      tracker.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
        if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs);
      });
    }
  });
}

// Logs a recurring error at most once per interval per kind, with how many occurred since the last
// line: an outage that fails thousands of requests a second writes a few lines, not thousands.
import type { Logger } from './logger.js';

export const THROTTLE_INTERVAL_MS = 5_000;

export class ThrottledLog {
  readonly #last = new Map<string, { atMs: number; suppressed: number }>();

  constructor(private readonly logger: Logger, private readonly intervalMs = THROTTLE_INTERVAL_MS, private readonly now: () => number = Date.now) {}

  /** Logs at once the first time, then at most once per interval with `count` = occurrences since the last line. */
  error(kind: string, fields: Record<string, unknown>, message: string): void {
    this.#log('error', kind, fields, message);
  }

  warn(kind: string, fields: Record<string, unknown>, message: string): void {
    this.#log('warn', kind, fields, message);
  }

  #log(level: 'error' | 'warn', kind: string, fields: Record<string, unknown>, message: string): void {
    const nowMs = this.now();
    const last = this.#last.get(kind);
    if (last && nowMs - last.atMs < this.intervalMs) {
      last.suppressed++;
      return;
    }
    this.logger[level]({ ...fields, kind, count: (last?.suppressed ?? 0) + 1 }, message);
    this.#last.set(kind, { atMs: nowMs, suppressed: 0 });
  }
}

// The silent default logger, and a per-reason throttle so an outage cannot flood the log.
import type { BillingLogger, Clock } from './types.js';

/** Discards everything; the default when no logger is configured. */
export const silentLogger: BillingLogger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});

interface ReasonState {
  lastLoggedMs: number;
  suppressed: number;
  level: 'warn' | 'error';
  fields: object;
  msg: string | undefined;
}

/**
 * Logs at most once per intervalMs per reason. Each line carries `count`: the occurrences it stands
 * for, i.e. this one plus those suppressed since the previous line of the same reason.
 */
export class ThrottledLog {
  readonly #reasons = new Map<string, ReasonState>();

  constructor(
    private readonly logger: BillingLogger,
    private readonly clock: Clock,
    private readonly intervalMs = 5000,
  ) {}

  /** Emits `{ reason, count, ...fields }` at warn level, or counts the occurrence if the reason logged recently. */
  warn(reason: string, fields: object = {}, msg?: string): void {
    this.#log('warn', reason, fields, msg);
  }

  /** The same at error level. */
  error(reason: string, fields: object = {}, msg?: string): void {
    this.#log('error', reason, fields, msg);
  }

  /** Logs the occurrences still suppressed (e.g. at shutdown), so a burst's tail is not lost. */
  flush(): void {
    for (const [reason, state] of this.#reasons) {
      if (state.suppressed === 0) continue;
      const count = state.suppressed;
      state.suppressed = 0;
      state.lastLoggedMs = this.clock.now();
      this.logger[state.level]({ reason, count, ...state.fields }, state.msg);
    }
  }

  #log(level: 'warn' | 'error', reason: string, fields: object, msg: string | undefined): void {
    const now = this.clock.now();
    const state = this.#reasons.get(reason);
    if (state && now - state.lastLoggedMs < this.intervalMs) {
      state.suppressed++;
      // Keep the latest details so that flush() reports the most recent occurrence.
      state.fields = fields;
      state.msg = msg;
      return;
    }
    const count = (state?.suppressed ?? 0) + 1;
    this.#reasons.set(reason, { lastLoggedMs: now, suppressed: 0, level, fields, msg });
    this.logger[level]({ reason, count, ...fields }, msg);
  }
}

// The process clock: real time in production, a hand-moved clock for tests (docs/behaviour.md#windows-and-time).
import type { Clock } from './types.js';
import { describeInput } from './validate.js';

/** Wall-clock time from `Date.now()`. */
export const systemClock: Clock = Object.freeze({ now: (): number => Date.now() });

function checkMs(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new TypeError(`${what} must be a finite number of epoch milliseconds, got ${describeInput(value)}`);
  }
  return value;
}

/** A clock that only moves when told to, so tests control every window and bucket boundary. */
export class ManualClock implements Clock {
  private nowMs: number;

  constructor(startMs: number) {
    this.nowMs = checkMs(startMs, 'startMs');
  }

  now(): number {
    return this.nowMs;
  }

  set(ms: number): void {
    this.nowMs = checkMs(ms, 'ms');
  }

  /** Moves by `ms` (negative moves back, to test clock skew). */
  advance(ms: number): void {
    this.nowMs = checkMs(this.nowMs + checkMs(ms, 'ms'), 'the advanced time');
  }
}

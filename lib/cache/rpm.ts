// RPM bucket arithmetic and request checks shared by the Redis script's caller and the memory cache,
// so both report buckets, counts and Retry-After the same way (docs/behaviour.md#requests-per-minute).
import type { RpmRequest, RpmResult } from '../types.js';

export const RPM_BUCKET_MS = 60_000;

/** The one-minute bucket that `nowMs` falls in, and when it ends: the Lua script's arithmetic. */
export function rpmBucket(nowMs: number): { bucket: number; endsAtMs: number } {
  const bucket = Math.floor(Math.floor(nowMs / 1000) / 60);
  return { bucket, endsAtMs: (bucket + 1) * RPM_BUCKET_MS };
}

/** Whole seconds from `nowMs` to the end of the bucket, at least 1 (a Retry-After of 0 means "now"). */
export function rpmRetryAfterSec(bucketEndsAtMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil((bucketEndsAtMs - nowMs) / 1000));
}

/** Caps are programmer input from the core: a wrong one is a bug, reported with the field's name. */
export function assertRpmRequest(request: RpmRequest): void {
  if (request.group !== undefined && !(Number.isSafeInteger(request.group.cap) && request.group.cap > 0)) {
    throw new TypeError(`rpm group.cap must be a positive integer, got ${String(request.group.cap)}`);
  }
  if (!(Number.isSafeInteger(request.userCap) && request.userCap >= 0)) {
    throw new TypeError(`rpm userCap must be a non-negative integer, got ${String(request.userCap)}`);
  }
}

const OUTCOMES: readonly RpmResult['outcome'][] = ['allowed', 'group_exceeded', 'user_exceeded'];

/** Builds the result from the script's numbers (outcome code 0, 1 or 2). */
export function rpmResult(outcomeCode: number, groupCount: number, userCount: number, bucketEndsAtMs: number, nowMs: number): RpmResult {
  const outcome = OUTCOMES[outcomeCode];
  if (outcome === undefined) throw new Error(`rpm script returned an unknown outcome code ${outcomeCode}`);
  return { outcome, groupCount, userCount, bucketEndsAtMs, retryAfterSec: rpmRetryAfterSec(bucketEndsAtMs, nowMs) };
}

const SPACE = 0x20;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/**
 * The RPM script's reply, `<outcome> <group count> <user count> <server time ms>`, as its four
 * numbers, or null when it is not four space-separated safe integers. Read digit by digit: it
 * arrives on every warm request, and a regular expression's match array, its substrings and their
 * conversions cost more than the script's answer is worth.
 */
export function parseRpmReply(reply: unknown): number[] | null {
  if (typeof reply !== 'string') return null;
  const numbers: number[] = [];
  let value = 0;
  let digits = 0;
  // The length read once: the reply string's shape varies with how the client decoded it, so each
  // `reply.length` in the loop would be a full property lookup rather than an inlined load.
  const length = reply.length;
  for (let i = 0; i <= length; i++) {
    const code = i < length ? reply.charCodeAt(i) : SPACE;
    if (code === SPACE) {
      if (digits === 0 || !Number.isSafeInteger(value)) return null;
      numbers.push(value);
      value = 0;
      digits = 0;
    } else if (code >= DIGIT_0 && code <= DIGIT_9 && digits < 16) {
      value = value * 10 + (code - DIGIT_0);
      digits++;
    } else {
      return null;
    }
  }
  return numbers.length === 4 ? numbers : null;
}

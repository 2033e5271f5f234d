// RPM bucket arithmetic and request checks shared by the Redis script's caller and the memory cache,
// so both report buckets, counts and Retry-After the same way (SPEC §2.5).
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

// Time-to-live of every cached entry kind (docs/behaviour.md#cache-consistency): one table, shared by the Redis and memory caches.
import type { CacheEntityKind, CacheEntityMap } from '../types.js';

const SECOND_MS = 1000;
const HOUR_MS = 3600 * SECOND_MS;
const DAY_MS = 24 * HOUR_MS;

/** Base lifetimes in milliseconds. Balance, subscription and override entries get the jitter below. */
export const CACHE_TTL_MS = Object.freeze({
  balance: 300 * SECOND_MS,
  subscription: 300 * SECOND_MS,
  rpmOverride: 300 * SECOND_MS,
  apiKeyWindows: 7 * DAY_MS,
  platformQuota: DAY_MS,
  /** "No quota row" markers expire sooner so a newly created row is seen within the hour (docs/behaviour.md#platform-quota). */
  platformQuotaSentinel: HOUR_MS,
  /**
   * An invalidated entry keeps its generation and last version this long: longer than any fill
   * can be in flight (store loads time out at 3 s, cache writes at 2 s), so a fill whose store
   * read began before the invalidation still finds the bumped generation and is refused.
   */
  tombstone: 60 * SECOND_MS,
});

/** RPM counters outlive their one-minute bucket by a minute, then vanish on their own. */
export const RPM_COUNTER_TTL_SEC = 120;

/**
 * Upper bound of the random amount subtracted from the short lifetimes, so entries filled together
 * (a deploy, a burst of new users) do not all expire in the same second. Subtract-only: an entry
 * never lives longer than its nominal TTL.
 */
export const TTL_JITTER_MS = 30 * SECOND_MS;

const JITTERED: ReadonlySet<CacheEntityKind> = new Set(['balance', 'subscription', 'rpmOverride']);

/** The TTL for writing `value` of `kind`; `random` returns [0, 1) like Math.random. */
export function entityTtlMs<K extends CacheEntityKind>(kind: K, value: CacheEntityMap[K], random: () => number): number {
  if (kind === 'platformQuota') {
    return (value as CacheEntityMap['platformQuota']).sentinel ? CACHE_TTL_MS.platformQuotaSentinel : CACHE_TTL_MS.platformQuota;
  }
  const base = CACHE_TTL_MS[kind as Exclude<CacheEntityKind, 'platformQuota'>];
  if (!JITTERED.has(kind)) return base;
  const r = random();
  // A misbehaving random source must not produce a negative or NaN TTL: clamp it into [0, 1].
  const fraction = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0;
  return base - Math.min(Math.floor(fraction * (TTL_JITTER_MS + 1)), TTL_JITTER_MS);
}

// The core's side of store holds (docs/holds.md): where a reservation goes when the cache cannot take
// it, how any lease is released wherever it is held, and the sweep that takes back expired store holds.
import { errorText } from './background-tasks.js';
import type { CoreInternals } from './core-internals.js';
import type { CacheEntityKind, CacheEntityMap, CacheEntityRef, EntityWrite, ReserveRequest, ReserveResult } from './types.js';

/** Lease ids of store holds start with this, so that a release (from settle() too) knows where to go. */
export const STORE_HOLD_PREFIX = 'store:';

/** How often each core takes back expired store holds (any process's: one that crashed cannot). */
export const STORE_HOLD_SWEEP_MS = 15_000;
const SWEEP_BATCH = 100;

export function isStoreHold(leaseId: string): boolean {
  return leaseId.startsWith(STORE_HOLD_PREFIX);
}

/** Whether the store can hold reservations at all. */
export function storeCanHold(core: CoreInternals): boolean {
  const { store } = core;
  return typeof store.holdInStore === 'function' && typeof store.releaseStoreHold === 'function';
}

/** Holds the reservation in the store under a store-hold lease id (returned with the result); the rows it changed go to the cache. */
export async function holdInStore(core: CoreInternals, request: ReserveRequest): Promise<{ leaseId: string; result: ReserveResult }> {
  const leaseId = `${STORE_HOLD_PREFIX}${request.leaseId}`;
  const held = await core.store.holdInStore!({ ...request, leaseId, nowMs: core.time().nowMs });
  if (held.outcome === 'denied') return { leaseId, result: held };
  putAll(core, held.writes);
  return { leaseId, result: { outcome: 'reserved', expiresAtMs: held.expiresAtMs } };
}

/** Releases a lease where it is held. Never throws: a lease that could not be released still expires. */
export async function releaseLease(core: CoreInternals, userId: string, leaseId: string): Promise<void> {
  core.renewer.untrack(userId, leaseId);
  try {
    if (!isStoreHold(leaseId)) {
      await core.cache?.release(userId, leaseId);
      return;
    }
    const writes = await core.store.releaseStoreHold?.(userId, leaseId);
    if (writes) putAll(core, writes);
  } catch (err) {
    // It still expires at its TTL; until then it only makes admission stricter.
    core.warnings.warn('lease_release_failed', { err: errorText(err) }, 'billing reservation release failed');
  }
}

/** Takes back every expired store hold (the store pages through them); their rows go to the cache. */
export async function sweepExpiredStoreHolds(core: CoreInternals): Promise<void> {
  const sweep = core.store.releaseExpiredStoreHolds;
  if (typeof sweep !== 'function') return;
  putAll(core, await sweep.call(core.store, core.time().nowMs, SWEEP_BATCH));
}

/** The new rows, versioned, to the cache (CacheSync remembers the ones it cannot write and invalidates them later). */
function putAll(core: CoreInternals, writes: readonly EntityWrite[]): void {
  for (const { ref, value } of writes) {
    void core.cacheSync.put(ref as CacheEntityRef & { kind: CacheEntityKind }, value as CacheEntityMap[CacheEntityKind]);
  }
}

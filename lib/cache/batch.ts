// The batched read's shape, shared by both caches: which refs one request reads, in a fixed order,
// and how their stored hashes become read results (one decoding path, so both caches agree).
import type { CacheBatchRequest, CacheBatchResult, CacheEntityKind, CacheEntityMap, CacheEntityRef, CacheRead } from '../types.js';
import { inspectEntry, type RawHash } from './entity-codec.js';

export type BatchSlot = keyof CacheBatchResult;

/** The refs a batch request names, each with the result field it fills. */
export function batchRefs(request: CacheBatchRequest): [BatchSlot, CacheEntityRef][] {
  const { userId } = request;
  const refs: [BatchSlot, CacheEntityRef][] = [];
  if (request.balance) refs.push(['balance', { kind: 'balance', userId }]);
  if (request.subscriptionGroupId !== undefined) {
    refs.push(['subscription', { kind: 'subscription', userId, groupId: request.subscriptionGroupId }]);
  }
  if (request.apiKeyId !== undefined) refs.push(['apiKeyWindows', { kind: 'apiKeyWindows', userId, apiKeyId: request.apiKeyId }]);
  if (request.platform !== undefined) refs.push(['platformQuota', { kind: 'platformQuota', userId, platform: request.platform }]);
  if (request.rpmOverrideGroupId !== undefined) {
    refs.push(['rpmOverride', { kind: 'rpmOverride', userId, groupId: request.rpmOverrideGroupId }]);
  }
  return refs;
}

/** A stored hash (null = absent or unreadable) as a read result: live data is a hit, anything else a miss. */
export function toCacheRead<K extends CacheEntityKind>(kind: K, hash: RawHash | null): CacheRead<CacheEntityMap[K]> {
  const state = inspectEntry(kind, hash);
  return state.live !== null ? { hit: true, value: state.live } : { hit: false, generation: state.generation };
}

/** Assembles the batch result from one stored hash per ref, in the order of `refs`. */
export function batchResult(refs: [BatchSlot, CacheEntityRef][], hashes: (RawHash | null)[]): CacheBatchResult {
  const result: Record<string, unknown> = {};
  refs.forEach(([slot, ref], i) => {
    result[slot] = toCacheRead(ref.kind, hashes[i] ?? null);
  });
  return result as CacheBatchResult;
}

/** Freezes a result and its reads and values, so one decoding can be handed to many requests. */
export function freezeBatchResult(result: CacheBatchResult): CacheBatchResult {
  for (const read of Object.values(result) as (CacheRead<object> | undefined)[]) {
    if (read === undefined) continue;
    if (read.hit) Object.freeze(read.value);
    Object.freeze(read);
  }
  return Object.freeze(result);
}

// Keeps the cache converging to the store: fills after misses, versioned puts after settlements and
// admin writes, invalidations — and a repair list for entries a cache outage left possibly stale (SPEC §3.3, §7).
import { errorText } from './background-tasks.js';
import type { ThrottledLog } from './log.js';
import type { SingleFlight } from './single-flight.js';
import type { BillingCache, CacheEntityKind, CacheEntityMap, CacheEntityRef } from './types.js';
import type { WriteQueue } from './write-queue.js';

const REPAIR_INTERVAL_MS = 1000;

/** A stable text key of one cached entity (repair list, single-flight loads). */
export function refKey(ref: CacheEntityRef): string {
  switch (ref.kind) {
    case 'balance': return `balance:${ref.userId}`;
    case 'subscription': return `subscription:${ref.userId}:${ref.groupId}`;
    case 'apiKeyWindows': return `apiKeyWindows:${ref.userId}:${ref.apiKeyId}`;
    case 'platformQuota': return `platformQuota:${ref.userId}:${ref.platform}`;
    case 'rpmOverride': return `rpmOverride:${ref.userId}:${ref.groupId}`;
  }
}

export class CacheSync {
  /** Entries whose last critical write failed: invalidated as soon as the cache answers again. */
  readonly #dirty = new Map<string, CacheEntityRef>();
  #timer: NodeJS.Timeout | undefined;
  #repairing: Promise<void> | undefined;

  constructor(
    private readonly cache: BillingCache | undefined,
    private readonly queue: WriteQueue,
    private readonly warnings: ThrottledLog,
    /** The store loads; a write gives up the entity's load so no later caller gets a value read before it. */
    private readonly loads: SingleFlight<string, unknown>,
  ) {}

  /**
   * Best-effort fill after a miss; dropped when the queue is full (the next read misses again).
   * Resolves when the fill has run or was dropped; never rejects (the queue logs failures).
   */
  fill<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K], generation: number): Promise<void> {
    const cache = this.cache;
    if (!cache) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const queued = this.queue.enqueue(`fill:${ref.kind}`, () => cache.fill(ref, value, generation).finally(resolve));
      if (!queued) resolve();
    });
  }

  /** Critical versioned write (settlement, admin): never lost silently — a failure marks the entry for repair. */
  put<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K]): Promise<void> {
    const cache = this.cache;
    this.loads.forget(refKey(ref));
    if (!cache) return Promise.resolve();
    return this.queue.enqueueCritical(`put:${ref.kind}`, (signal) => this.#guarded(ref, signal, () => cache.put(ref, value)));
  }

  /** Invalidation (admin change, key-window reset); on failure the entry is repaired later. */
  async invalidate(ref: CacheEntityRef): Promise<void> {
    const cache = this.cache;
    this.loads.forget(refKey(ref));
    if (!cache) return;
    try {
      await cache.invalidate(ref);
    } catch (err) {
      this.#markDirty(ref, err);
    }
  }

  get pendingRepairs(): number {
    return this.#dirty.size;
  }

  /** One last repair attempt and stop the timer (close()). */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#repairing;
    if (this.#dirty.size > 0) await this.#repair();
  }

  async #guarded(ref: CacheEntityRef, signal: AbortSignal, write: () => Promise<unknown>): Promise<void> {
    // If the write outlives its timeout we cannot know whether it landed: treat it as failed.
    const onAbort = () => this.#markDirty(ref, new Error('cache write timed out'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await write();
    } catch (err) {
      this.#markDirty(ref, err);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  #markDirty(ref: CacheEntityRef, err: unknown): void {
    this.#dirty.set(refKey(ref), ref);
    this.warnings.warn('cache_write_failed', { entity: ref.kind, err: errorText(err) }, 'billing cache write failed; entry will be invalidated when the cache answers');
    if (!this.#timer) {
      this.#timer = setInterval(() => {
        this.#repairing ??= this.#repair().finally(() => (this.#repairing = undefined));
      }, REPAIR_INTERVAL_MS);
      this.#timer.unref();
    }
  }

  async #repair(): Promise<void> {
    const cache = this.cache;
    if (!cache) return;
    for (const [key, ref] of [...this.#dirty]) {
      try {
        await cache.invalidate(ref);
        // A newer failure of the same entry re-marks it; only clear what we repaired.
        if (this.#dirty.get(key) === ref) this.#dirty.delete(key);
      } catch {
        return; // still down: try again on the next tick
      }
    }
    if (this.#dirty.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

// Keeps the cache converging to the store: fills after misses, versioned puts after settlements and
// admin writes, invalidations — and a repair list for entries a cache outage left possibly stale (docs/behaviour.md#settlement, docs/behaviour.md#cache-consistency).
import { errorText } from './background-tasks.js';
import type { ThrottledLog } from './log.js';
import type { SingleFlight } from './single-flight.js';
import type { BillingCache, CacheEntityKind, CacheEntityMap, CacheEntityRef } from './types.js';
import type { WriteQueue } from './write-queue.js';

const REPAIR_INTERVAL_MS = 1000;

/** A stable text key of one cached entity (repair list, single-flight loads). */
export function refKey(ref: CacheEntityRef): string {
  switch (ref.kind) {
    case 'balance':
      return `balance:${ref.userId}`;
    case 'subscription':
      return `subscription:${ref.userId}:${ref.groupId}`;
    case 'apiKeyWindows':
      return `apiKeyWindows:${ref.userId}:${ref.apiKeyId}`;
    case 'platformQuota':
      return `platformQuota:${ref.userId}:${ref.platform}`;
    case 'rpmOverride':
      return `rpmOverride:${ref.userId}:${ref.groupId}`;
  }
}

interface GatheredPuts {
  puts: { ref: CacheEntityRef; write: () => Promise<unknown> }[];
  /** Settles once the turn's puts have been written (or failed and been marked for repair). */
  written: Promise<void>;
}

export class CacheSync {
  /** Entries whose last critical write failed: invalidated as soon as the cache answers again. */
  readonly #dirty = new Map<string, CacheEntityRef>();
  /** Puts asked for in this run of microtasks, written together when it ends (see put). */
  #gathering: GatheredPuts | null = null;
  /** Gathered puts not yet written (close() waits for them). */
  readonly #writing = new Set<Promise<void>>();
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

  /**
   * Critical versioned write (settlement, admin): never lost silently — a failure marks the entry for
   * repair. The puts asked for before the current microtasks have run (a group-commit transaction's
   * settlements all resolve at once) go as one write task whose commands leave together: its rows reach
   * the cache in one round trip, not one queue slot each (docs/group-commit.md). The write starts
   * before any I/O can interleave, so the next request already sees it. Resolves when it has run.
   */
  put<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K]): Promise<void> {
    const cache = this.cache;
    this.loads.forget(refKey(ref));
    if (!cache) return Promise.resolve();
    if (this.#gathering === null) {
      const gathering: GatheredPuts = { puts: [], written: Promise.resolve() };
      gathering.written = new Promise<void>((resolve) => queueMicrotask(() => resolve(this.#write(gathering))));
      this.#gathering = gathering;
      this.#writing.add(gathering.written);
      void gathering.written.then(() => this.#writing.delete(gathering.written));
    }
    this.#gathering.puts.push({ ref, write: () => cache.put(ref, value) });
    return this.#gathering.written;
  }

  /** One critical task for the gathered puts: each failure (or the task's timeout) marks its entries for repair. */
  #write(gathering: GatheredPuts): Promise<void> {
    if (this.#gathering === gathering) this.#gathering = null;
    const { puts } = gathering;
    const name = puts.length === 1 ? `put:${puts[0]!.ref.kind}` : 'put:batch';
    return this.queue.enqueueCritical(name, async (signal) => {
      // If the writes outlive their timeout we cannot know whether they landed: treat them as failed.
      const onAbort = () => {
        for (const { ref } of puts) this.#markDirty(ref, new Error('cache write timed out'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        await Promise.all(puts.map(({ ref, write }) => write().catch((err: unknown) => this.#markDirty(ref, err))));
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
    });
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
    while (this.#writing.size > 0) await Promise.all(this.#writing);
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#repairing;
    if (this.#dirty.size > 0) await this.#repair();
  }

  #markDirty(ref: CacheEntityRef, err: unknown): void {
    this.#dirty.set(refKey(ref), ref);
    this.warnings.warn(
      'cache_write_failed',
      { entity: ref.kind, err: errorText(err) },
      'billing cache write failed; entry will be invalidated when the cache answers',
    );
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

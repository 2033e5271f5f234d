// The BillingCache contract suite, run unchanged against the memory cache, a single Redis and a Redis
// Cluster: versions and generations, the batched read, TTLs, RPM, corrupt contents (docs/behaviour.md#cache-consistency) and leases (docs/holds.md).
import type { CacheKeys } from '../../lib/cache/keys.js';
import type { BillingCache } from '../../lib/types.js';
import { corruptContract } from './cache-contract-corrupt.js';
import { leaseBookContract } from './cache-contract-lease-book.js';
import { leaseContract } from './cache-contract-leases.js';
import { rpmContract } from './cache-contract-rpm.js';
import { ttlContract } from './cache-contract-ttl.js';
import { versionContract } from './cache-contract-versions.js';

/** A cache that also tells which key names it uses. */
export type TestableCache = BillingCache & { readonly keys: CacheKeys };

/** Direct access to stored entries, bypassing the cache: HGETALL / replace / PTTL or their memory twins. */
export interface RawAccess {
  /** The stored hash, or null when the key is absent. */
  read(key: string): Promise<Record<string, string> | null>;
  /** Replaces whatever the key holds with `hash` (living an hour). */
  write(key: string, hash: Record<string, string>): Promise<void>;
  /** Remaining life in ms; -2 when absent. */
  ttlMs(key: string): Promise<number>;
}

export interface CacheUnderTest {
  cache: TestableCache;
  raw: RawAccess;
}

export interface CacheTarget {
  /** A cache on the shared backend; `random` drives the TTL jitter. Closed by the suite. */
  open(options?: { random?: () => number }): CacheUnderTest;
  /** Moves the cache's clock; absent for Redis, whose clock (TIME) the test cannot move. */
  clock?: { now(): number; advance(ms: number): void };
  /**
   * How many commands the server received from the cache's connections while `action` ran;
   * absent for the memory cache, which makes no round trips at all.
   */
  countCommands?(cache: TestableCache, action: () => Promise<unknown>): Promise<number>;
  /** The commands the server's scripts ran while `action` ran (absent for the memory cache). */
  scriptedCommands?(action: () => Promise<unknown>): Promise<string[][]>;
  close(): Promise<void>;
}

/** What each part of the suite reads once `before` has run. */
export interface ContractContext {
  readonly target: CacheTarget;
  readonly cache: TestableCache;
  readonly raw: RawAccess;
  /** Opens another cache on the same backend, closed after the suite. */
  open(options?: { random?: () => number }): CacheUnderTest;
}

export function describeCacheContract(title: string, setup: (context: Mocha.Context) => Promise<CacheTarget>): void {
  describe(`BillingCache contract: ${title}`, function () {
    let target: CacheTarget | undefined;
    const opened: CacheUnderTest[] = [];

    const context: ContractContext = {
      get target() {
        if (!target) throw new Error('cache target not set up');
        return target;
      },
      get cache() {
        return this.main.cache;
      },
      get raw() {
        return this.main.raw;
      },
      open(options) {
        const subject = this.target.open(options);
        opened.push(subject);
        return subject;
      },
      // The main cache jitters by 0, so its TTLs are exact.
      get main(): CacheUnderTest {
        const first = opened[0];
        if (!first) throw new Error('cache not opened');
        return first;
      },
    } as ContractContext & { main: CacheUnderTest };

    before(async function () {
      target = await setup(this);
      context.open({ random: () => 0 });
    });

    after(async function () {
      for (const { cache } of opened.splice(0)) await cache.close();
      await target?.close();
    });

    versionContract(context);
    ttlContract(context);
    rpmContract(context);
    corruptContract(context);
    leaseContract(context);
    leaseBookContract(context);
  });
}

// The faults suites' users and bookkeeping: subjects that exercise every cached entity, seeded accounts,
// a ledger of what was settled, and the checks that the store and the cache ended up exact.
import { expect } from 'chai';
import type { Knex } from 'knex';
import type { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { formatUsd } from '../../lib/money.js';
import type { KnexBillingStore } from '../../lib/store/knex-store.js';
import { TABLES } from '../../lib/store/tables.js';
import type { BillingSubject } from '../../lib/types.js';

export const PLATFORM = 'openai';
/** 1000 USD: far more than any run spends, so no request is turned away for balance. */
export const INITIAL_BALANCE_UNITS = 100_000_000_000n;

export interface FaultUser {
  id: string;
  keyId: string;
  /** Whether the user has a platform-quota row (the others get a cached sentinel). */
  quota: boolean;
}

export function makeUsers(count: number, label: string): FaultUser[] {
  return Array.from({ length: count }, (_, i) => ({ id: `${label}-u${i}`, keyId: `${label}-k${i}`, quota: i % 2 === 0 }));
}

/** Balance mode with every check that touches the cache: quota, key windows, RPM (caps high enough never to deny). */
export function subjectOf(user: FaultUser): BillingSubject {
  return {
    user: { id: user.id, rpmLimit: 1_000_000 },
    apiKey: { id: user.keyId, rateLimit5h: '100000', rateLimit7d: '100000' },
    platform: PLATFORM,
  };
}

export async function seedUsers(store: KnexBillingStore, users: readonly FaultUser[]): Promise<void> {
  for (const user of users) {
    await store.topUp(user.id, INITIAL_BALANCE_UNITS);
    if (user.quota) await store.setPlatformQuota(user.id, PLATFORM, { dailyLimit: null, weeklyLimit: null, monthlyLimit: INITIAL_BALANCE_UNITS });
  }
}

/** mulberry32: a seeded generator, so a failing soak can be replayed with its printed seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A cost of 0.00000001 to 0.01 USD, as exact units, with all eight decimals in play. */
export function randomCostUnits(random: () => number): bigint {
  return BigInt(1 + Math.floor(random() * 1_000_000));
}

/** Every distinct settlement made, with the time it was made (performance.now()). */
export class Ledger {
  readonly #entries = new Map<string, { userId: string; units: bigint; atMs: number }>();

  record(requestId: string, userId: string, units: bigint): void {
    const known = this.#entries.get(requestId);
    if (known && (known.userId !== userId || known.units !== units)) throw new Error(`ledger: ${requestId} recorded with other content`);
    if (!known) this.#entries.set(requestId, { userId, units, atMs: performance.now() });
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Request ids made between two performance.now() instants. */
  madeBetween(fromMs: number, toMs: number): string[] {
    return [...this.#entries].filter(([, e]) => e.atMs >= fromMs && e.atMs < toMs).map(([id]) => id);
  }

  spentBy(userId: string): bigint {
    let sum = 0n;
    for (const entry of this.#entries.values()) if (entry.userId === userId) sum += entry.units;
    return sum;
  }
}

/** Store exactness for `users`: one usage row per distinct settlement, and every balance, 7-day key window and monthly quota = initial − Σ costs. */
export async function expectStoreExact(knex: Knex, store: KnexBillingStore, users: readonly FaultUser[], ledger: Ledger): Promise<void> {
  const [{ rows, distinct }] = (await knex(TABLES.usageLog)
    .whereIn(
      'user_id',
      users.map((user) => user.id),
    )
    .select(knex.raw('count(*)::int as rows'), knex.raw('count(distinct request_id)::int as distinct'))) as [{ rows: number; distinct: number }];
  expect(rows, 'usage rows').to.equal(ledger.size);
  expect(distinct, 'distinct request ids').to.equal(ledger.size);
  for (const user of users) {
    const spent = ledger.spentBy(user.id);
    const balance = await store.getBalance(user.id);
    expect(formatUsd(balance!.balance), `balance of ${user.id}`).to.equal(formatUsd(INITIAL_BALANCE_UNITS - spent));
    const windows = await store.getApiKeyWindows(user.id, user.keyId);
    expect(formatUsd(windows.usage7d), `7d key window of ${user.id}`).to.equal(formatUsd(spent));
    if (user.quota) {
      const quota = await store.getPlatformQuota(user.id, PLATFORM);
      expect(formatUsd(quota!.monthlyUsage), `monthly quota usage of ${user.id}`).to.equal(formatUsd(spent));
    }
  }
}

/**
 * Cache exactness: every cached balance, key-window and platform-quota entry equals the store's row
 * (value and version). With `requireHits`, a missing entry fails too. Resolves to the hit/miss counts.
 */
export async function expectCacheEqualsStore(
  cache: RedisBillingCache,
  store: KnexBillingStore,
  users: readonly FaultUser[],
  requireHits: boolean,
): Promise<{ hits: number; misses: number }> {
  let hits = 0;
  let misses = 0;
  for (const user of users) {
    const read = await cache.readBatch({ userId: user.id, balance: true, apiKeyId: user.keyId, platform: PLATFORM });
    const expected = {
      balance: await store.getBalance(user.id),
      apiKeyWindows: await store.getApiKeyWindows(user.id, user.keyId),
      platformQuota: await store.getPlatformQuota(user.id, PLATFORM),
    };
    for (const slot of ['balance', 'apiKeyWindows', 'platformQuota'] as const) {
      const entry = read[slot];
      if (!entry?.hit) {
        misses++;
        if (requireHits) expect.fail(`${slot} of ${user.id} is not cached`);
        continue;
      }
      hits++;
      const value = entry.value as { sentinel?: boolean };
      // A user without a quota row is cached as a sentinel (docs/behaviour.md#platform-quota); the store has no row.
      if (slot === 'platformQuota' && expected.platformQuota === null) expect(value.sentinel, `quota sentinel of ${user.id}`).to.equal(true);
      else expect(entry.value, `${slot} of ${user.id}`).to.deep.equal(expected[slot]);
    }
  }
  return { hits, misses };
}

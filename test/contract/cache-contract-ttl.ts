// Contract part: how long each kind of entry lives (jitter, sentinels, tombstones, counters), and that
// an expired entry reads as absent, when the test can move the cache's clock.
import { expect } from 'chai';
import type { CacheEntityKind } from '../../lib/types.js';
import type { ContractContext } from './cache-contract.js';
import {
  apiKeyWindowsCase,
  balanceCase,
  freshUserId,
  platformQuotaCase,
  rpmOverrideCase,
  sentinelQuota,
  subscriptionCase,
  type KindCase,
} from './cache-fixtures.js';

const SECOND = 1000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;
// Real time passes between the write and PTTL on Redis; the memory cache's manual clock stands still.
const SLACK_MS = 2000;

function expectTtl(actualMs: number, expectedMs: number): void {
  expect(actualMs, `ttl ${actualMs} ms, expected about ${expectedMs} ms`).to.be.within(expectedMs - SLACK_MS, expectedMs);
}

export function ttlContract(ctx: ContractContext): void {
  describe('TTLs', function () {
    const jittered: KindCase<CacheEntityKind>[] = [balanceCase, subscriptionCase, rpmOverrideCase] as KindCase<CacheEntityKind>[];

    for (const kind of jittered) {
      it(`gives ${kind.kind} 300 s minus a jitter of at most 30 s`, async function () {
        for (const [random, expectedMs] of [
          [0, 300 * SECOND],
          [0.5, 285 * SECOND],
          [0.99999, 270 * SECOND],
          [1, 270 * SECOND],
        ] as const) {
          const { cache, raw } = ctx.open({ random: () => random });
          const ref = kind.ref(freshUserId());
          await cache.put(ref, kind.value(1));
          expectTtl(await raw.ttlMs(cache.keys.entity(ref)), expectedMs);
        }
      });
    }

    it('never lets a broken random source lengthen or negate a TTL', async function () {
      for (const random of [Number.NaN, -5, 7]) {
        const { cache, raw } = ctx.open({ random: () => random });
        const ref = balanceCase.ref(freshUserId());
        await cache.fill(ref, balanceCase.value(1), 0);
        const ttl = await raw.ttlMs(cache.keys.entity(ref));
        expect(ttl).to.be.within(270 * SECOND - SLACK_MS, 300 * SECOND);
      }
    });

    it('keeps key windows 7 days, quota rows 24 h and sentinel quota entries 1 h', async function () {
      const userId = freshUserId();
      await ctx.cache.put(apiKeyWindowsCase.ref(userId), apiKeyWindowsCase.value(1));
      expectTtl(await ctx.raw.ttlMs(ctx.cache.keys.entity(apiKeyWindowsCase.ref(userId))), 7 * DAY);
      await ctx.cache.fill(platformQuotaCase.ref(userId), platformQuotaCase.value(1), 0);
      expectTtl(await ctx.raw.ttlMs(ctx.cache.keys.entity(platformQuotaCase.ref(userId))), DAY);
      const other = freshUserId();
      await ctx.cache.fill(platformQuotaCase.ref(other), sentinelQuota(), 0);
      expectTtl(await ctx.raw.ttlMs(ctx.cache.keys.entity(platformQuotaCase.ref(other))), HOUR);
    });

    it('keeps a tombstone 60 s, whatever the entry lived before', async function () {
      const userId = freshUserId();
      const key = ctx.cache.keys.entity(apiKeyWindowsCase.ref(userId));
      await ctx.cache.put(apiKeyWindowsCase.ref(userId), apiKeyWindowsCase.value(1));
      await ctx.cache.invalidate(apiKeyWindowsCase.ref(userId));
      expectTtl(await ctx.raw.ttlMs(key), 60 * SECOND);
      // A put on the tombstone brings back the kind's own lifetime.
      await ctx.cache.put(apiKeyWindowsCase.ref(userId), apiKeyWindowsCase.value(2));
      expectTtl(await ctx.raw.ttlMs(key), 7 * DAY);
    });

    it('keeps RPM counters 120 s', async function () {
      const userId = freshUserId();
      await ctx.cache.rpmHit({ userId, group: { groupId: 'g1', cap: 10 }, userCap: 10 });
      expectTtl(await ctx.raw.ttlMs(ctx.cache.keys.rpmUser(userId)), 120 * SECOND);
      expectTtl(await ctx.raw.ttlMs(ctx.cache.keys.rpmGroup(userId, 'g1')), 120 * SECOND);
    });

    it('reads an expired entry as absent, and an expired tombstone forgets its generation', async function () {
      const { clock } = ctx.target;
      if (!clock) this.skip(); // Redis expires keys on its own clock, which the test cannot move
      const userId = freshUserId();
      const ref = balanceCase.ref(userId);
      await ctx.cache.put(ref, balanceCase.value(1));
      clock.advance(300 * SECOND - 1);
      expect((await ctx.cache.readBatch(balanceCase.batch(userId))).balance).to.deep.equal({ hit: true, value: balanceCase.value(1) });
      clock.advance(1);
      expect((await ctx.cache.readBatch(balanceCase.batch(userId))).balance).to.deep.equal({ hit: true, value: balanceCase.value(1) });
      clock.advance(1);
      expect((await ctx.cache.readBatch(balanceCase.batch(userId))).balance).to.deep.equal({ hit: false, generation: 0 });

      await ctx.cache.invalidate(ref);
      clock.advance(60 * SECOND + 1);
      expect((await ctx.cache.readBatch(balanceCase.batch(userId))).balance).to.deep.equal({ hit: false, generation: 0 });
      expect(await ctx.raw.ttlMs(ctx.cache.keys.entity(ref))).to.equal(-2);
    });
  });
}

// Contract: window-aware updates (docs/behaviour.md) at their exact boundaries, null starts, expired-window resets and DST days.
import { expect } from 'chai';
import type { SettlementResult } from '../../lib/types.js';
import { at, ms, settlement, usd, type GetFixture } from './store-fixtures.js';

/** Whole dollars as units; costs 1, 2, 4, 8… make every sum of a sequence unique. */
const $ = (dollars: number): bigint => usd(String(dollars));

export function windowContract(fx: GetFixture): void {
  /** A fresh balance user with a tracked key and an 'openai' quota; returns "settle N dollars at this instant". */
  async function balanceUser() {
    const { store, id } = fx();
    const [user, key] = [id('u'), id('k')];
    await store.topUp(user, usd('100000'));
    await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('1000') });
    return (dollars: number, iso: string, timezone = 'UTC'): Promise<SettlementResult> =>
      store.settle(
        settlement({
          requestId: id('r'),
          userId: user,
          apiKeyId: key,
          trackKeyWindows: true,
          platform: 'openai',
          costUnits: $(dollars),
          time: at(iso, timezone),
        }),
      );
  }

  async function subscriptionUser() {
    const { store, id } = fx();
    const [user, group] = [id('u'), id('g')];
    await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs: ms('2030-01-01T00:00:00Z') });
    return (dollars: number, iso: string, timezone = 'UTC'): Promise<SettlementResult> =>
      store.settle(settlement({ requestId: id('r'), userId: user, groupId: group, mode: 'subscription', costUnits: $(dollars), time: at(iso, timezone) }));
  }

  const keys = (r: SettlementResult) => {
    const w = r.apiKeyWindows!;
    return [w.usage5h, w.start5hMs, w.usage1d, w.start1dMs, w.usage7d, w.start7dMs];
  };
  const windows = (w: {
    dailyUsage: bigint;
    dailyStartMs: number | null;
    weeklyUsage: bigint;
    weeklyStartMs: number | null;
    monthlyUsage: bigint;
    monthlyStartMs: number | null;
  }) => [w.dailyUsage, w.dailyStartMs, w.weeklyUsage, w.weeklyStartMs, w.monthlyUsage, w.monthlyStartMs];

  it('key windows: 5 h rolls from first use, 1 d and 7 d from the start of that day; exactly at the end is expired', async () => {
    const settle = await balanceUser();
    const day6 = ms('2024-03-06T00:00:00Z');
    expect(keys(await settle(1, '2024-03-06T10:30:00Z'))).to.deep.equal([$(1), ms('2024-03-06T10:30:00Z'), $(1), day6, $(1), day6]);
    expect(keys(await settle(2, '2024-03-06T15:29:59.999Z'))).to.deep.equal([$(3), ms('2024-03-06T10:30:00Z'), $(3), day6, $(3), day6]);
    expect(keys(await settle(4, '2024-03-06T15:30:00Z'))).to.deep.equal([$(4), ms('2024-03-06T15:30:00Z'), $(7), day6, $(7), day6]);
    expect(keys(await settle(8, '2024-03-06T23:59:59.999Z'))).to.deep.equal([$(8), ms('2024-03-06T23:59:59.999Z'), $(15), day6, $(15), day6]);
    const day7 = ms('2024-03-07T00:00:00Z');
    expect(keys(await settle(16, '2024-03-07T00:00:00Z'))).to.deep.equal([$(24), ms('2024-03-06T23:59:59.999Z'), $(16), day7, $(31), day6]);
    const day12 = ms('2024-03-12T00:00:00Z');
    expect(keys(await settle(32, '2024-03-12T23:59:59.999Z'))).to.deep.equal([$(32), ms('2024-03-12T23:59:59.999Z'), $(32), day12, $(63), day6]);
    const day13 = ms('2024-03-13T00:00:00Z');
    expect(keys(await settle(64, '2024-03-13T00:00:00Z'))).to.deep.equal([$(96), ms('2024-03-12T23:59:59.999Z'), $(64), day13, $(64), day13]);
  });

  it('subscription windows: daily is the calendar day, weekly 7×24 h and monthly 30×24 h periods term-aligned from first use', async () => {
    const settle = await subscriptionUser();
    const first = ms('2024-03-06T10:00:00Z');
    const sub = async (dollars: number, iso: string) => windows((await settle(dollars, iso)).subscription!);
    expect(await sub(1, '2024-03-06T10:00:00Z')).to.deep.equal([$(1), ms('2024-03-06T00:00:00Z'), $(1), first, $(1), first]);
    expect(await sub(2, '2024-03-06T23:59:59.999Z')).to.deep.equal([$(3), ms('2024-03-06T00:00:00Z'), $(3), first, $(3), first]);
    expect(await sub(4, '2024-03-07T00:00:00Z')).to.deep.equal([$(4), ms('2024-03-07T00:00:00Z'), $(7), first, $(7), first]);
    expect(await sub(8, '2024-03-13T09:59:59.999Z')).to.deep.equal([$(8), ms('2024-03-13T00:00:00Z'), $(15), first, $(15), first]);
    const week2 = ms('2024-03-13T10:00:00Z');
    expect(await sub(16, '2024-03-13T10:00:00Z')).to.deep.equal([$(24), ms('2024-03-13T00:00:00Z'), $(16), week2, $(31), first]);
    // Unused for three weeks: the new week is the fourth period from week2's start, not one from now.
    const week5 = ms('2024-04-03T10:00:00Z');
    expect(await sub(32, '2024-04-05T09:59:59.999Z')).to.deep.equal([$(32), ms('2024-04-05T00:00:00Z'), $(32), week5, $(63), first]);
    expect(await sub(64, '2024-04-05T10:00:00Z')).to.deep.equal([$(96), ms('2024-04-05T00:00:00Z'), $(96), week5, $(64), ms('2024-04-05T10:00:00Z')]);
    // Months too: 75 days after the second month began is the third period after it, 60 days on.
    expect(await sub(1, '2024-06-19T11:00:00Z')).to.deep.equal([
      $(1),
      ms('2024-06-19T00:00:00Z'),
      $(1),
      ms('2024-06-19T10:00:00Z'),
      $(1),
      ms('2024-06-04T10:00:00Z'),
    ]);
  });

  it('platform quota windows: calendar day, calendar week from Monday 00:00, monthly 30×24 h from first use', async () => {
    const settle = await balanceUser();
    const quota = async (dollars: number, iso: string) => windows((await settle(dollars, iso)).platformQuota!);
    const first = ms('2024-03-06T10:00:00Z');
    expect(await quota(1, '2024-03-06T10:00:00Z')).to.deep.equal([$(1), ms('2024-03-06T00:00:00Z'), $(1), ms('2024-03-04T00:00:00Z'), $(1), first]);
    // Sunday 23:59:59.999 is still the week of Monday 4 March; Monday 00:00 starts the next one.
    expect(await quota(2, '2024-03-10T23:59:59.999Z')).to.deep.equal([$(2), ms('2024-03-10T00:00:00Z'), $(3), ms('2024-03-04T00:00:00Z'), $(3), first]);
    expect(await quota(4, '2024-03-11T00:00:00Z')).to.deep.equal([$(4), ms('2024-03-11T00:00:00Z'), $(4), ms('2024-03-11T00:00:00Z'), $(7), first]);
    expect(await quota(8, '2024-04-05T09:59:59.999Z')).to.deep.equal([$(8), ms('2024-04-05T00:00:00Z'), $(8), ms('2024-04-01T00:00:00Z'), $(15), first]);
    expect(await quota(16, '2024-04-05T10:00:00Z')).to.deep.equal([
      $(24),
      ms('2024-04-05T00:00:00Z'),
      $(24),
      ms('2024-04-01T00:00:00Z'),
      $(16),
      ms('2024-04-05T10:00:00Z'),
    ]);
  });

  describe('resetExpiredApiKeyWindows', () => {
    it('resets only windows that were started and have expired, bumping the version only when it changed something', async () => {
      const { store, id } = fx();
      const [user, key] = [id('u'), id('k')];
      await store.topUp(user, usd('10'));
      const time = (iso: string) => at(iso);
      const never = await store.resetExpiredApiKeyWindows(user, key, time('2024-03-06T10:00:00Z'));
      expect(never).to.deep.equal({ version: 0, usage5h: 0n, usage1d: 0n, usage7d: 0n, start5hMs: null, start1dMs: null, start7dMs: null });
      expect(await fx().knex('billing_api_key_windows').where({ user_id: user })).to.have.length(0);

      const used = await store.settle(
        settlement({ requestId: id('r'), userId: user, apiKeyId: key, trackKeyWindows: true, costUnits: $(1), time: time('2024-03-06T10:30:00Z') }),
      );
      const day6 = ms('2024-03-06T00:00:00Z');
      expect(await store.resetExpiredApiKeyWindows(user, key, time('2024-03-06T15:29:59.999Z'))).to.deep.equal(used.apiKeyWindows);
      const r5h = { version: 2, usage5h: 0n, start5hMs: null, usage1d: $(1), start1dMs: day6, usage7d: $(1), start7dMs: day6 };
      expect(await store.resetExpiredApiKeyWindows(user, key, time('2024-03-06T15:30:00Z'))).to.deep.equal(r5h);
      // A window with a null start needs no reset: nothing is written, the version stays.
      expect(await store.resetExpiredApiKeyWindows(user, key, time('2024-03-06T23:59:59.999Z'))).to.deep.equal(r5h);
      const r1d = { ...r5h, version: 3, usage1d: 0n, start1dMs: null };
      expect(await store.resetExpiredApiKeyWindows(user, key, time('2024-03-07T00:00:00Z'))).to.deep.equal(r1d);
      expect(await store.resetExpiredApiKeyWindows(user, key, time('2024-03-12T23:59:59.999Z'))).to.deep.equal(r1d);
      const all = { ...r1d, version: 4, usage7d: 0n, start7dMs: null };
      expect(await store.resetExpiredApiKeyWindows(user, key, time('2024-03-13T00:00:00Z'))).to.deep.equal(all);
      expect(await store.resetExpiredApiKeyWindows(user, key, time('2024-04-13T00:00:00Z'))).to.deep.equal(all);
      expect(await store.getApiKeyWindows(user, key)).to.deep.equal(all);

      // Null starts: the next charge starts every window afresh.
      const again = await store.settle(
        settlement({ requestId: id('r'), userId: user, apiKeyId: key, trackKeyWindows: true, costUnits: $(2), time: time('2024-04-13T08:00:00Z') }),
      );
      const day = ms('2024-04-13T00:00:00Z');
      expect(again.apiKeyWindows).to.deep.equal({
        version: 5,
        usage5h: $(2),
        start5hMs: ms('2024-04-13T08:00:00Z'),
        usage1d: $(2),
        start1dMs: day,
        usage7d: $(2),
        start7dMs: day,
      });
    });
  });

  describe('DST days in America/New_York', () => {
    const NY = 'America/New_York';

    it('subscription daily: the 23-hour spring-forward day ends at local midnight, 23 h after it began', async () => {
      const settle = await subscriptionUser();
      const daily = async (dollars: number, iso: string) => {
        const s = (await settle(dollars, iso, NY)).subscription!;
        return [s.dailyUsage, s.dailyStartMs];
      };
      expect(await daily(1, '2024-03-10T05:00:00Z')).to.deep.equal([$(1), ms('2024-03-10T05:00:00Z')]); // 00:00 EST
      expect(await daily(2, '2024-03-11T03:59:59.999Z')).to.deep.equal([$(3), ms('2024-03-10T05:00:00Z')]); // 23:59:59.999 EDT
      expect(await daily(4, '2024-03-11T04:00:00Z')).to.deep.equal([$(4), ms('2024-03-11T04:00:00Z')]); // 00:00 EDT
    });

    it('quota daily and weekly: the 25-hour fall-back day, and the week that starts on the Monday after it', async () => {
      const settle = await balanceUser();
      const quota = async (dollars: number, iso: string) => {
        const q = (await settle(dollars, iso, NY)).platformQuota!;
        return [q.dailyUsage, q.dailyStartMs, q.weeklyUsage, q.weeklyStartMs];
      };
      const nov3 = ms('2024-11-03T04:00:00Z'); // Sunday 00:00 EDT
      const oct28 = ms('2024-10-28T04:00:00Z'); // Monday 00:00 EDT
      expect(await quota(1, '2024-11-03T04:00:00Z')).to.deep.equal([$(1), nov3, $(1), oct28]);
      expect(await quota(2, '2024-11-04T04:59:59.999Z')).to.deep.equal([$(3), nov3, $(3), oct28]); // Sunday 23:59:59.999 EST
      const nov4 = ms('2024-11-04T05:00:00Z'); // Monday 00:00 EST
      expect(await quota(4, '2024-11-04T05:00:00Z')).to.deep.equal([$(4), nov4, $(4), nov4]);
    });

    it('key 1 d: anchored at local midnight; on the spring-forward day it ends at 01:00 EDT the next day', async () => {
      const settle = await balanceUser();
      const oneDay = async (dollars: number, iso: string) => {
        const w = (await settle(dollars, iso, NY)).apiKeyWindows!;
        return [w.usage1d, w.start1dMs, w.usage7d, w.start7dMs];
      };
      const mar10 = ms('2024-03-10T05:00:00Z');
      expect(await oneDay(1, '2024-03-10T12:00:00Z')).to.deep.equal([$(1), mar10, $(1), mar10]);
      expect(await oneDay(2, '2024-03-11T04:59:59.999Z')).to.deep.equal([$(3), mar10, $(3), mar10]);
      expect(await oneDay(4, '2024-03-11T05:00:00Z')).to.deep.equal([$(4), ms('2024-03-11T04:00:00Z'), $(7), mar10]);
    });

    it('key 1 d: first used in the last hour of the 25-hour day, the window starts then (never born expired)', async () => {
      const settle = await balanceUser();
      const oneDay = async (dollars: number, iso: string) => {
        const w = (await settle(dollars, iso, NY)).apiKeyWindows!;
        return [w.usage1d, w.start1dMs, w.start7dMs];
      };
      const lastHour = ms('2024-11-04T04:30:00Z'); // 23:30 EST on Sunday 3 November
      expect(await oneDay(1, '2024-11-04T04:30:00Z')).to.deep.equal([$(1), lastHour, ms('2024-11-03T04:00:00Z')]);
      expect(await oneDay(2, '2024-11-05T04:29:59.999Z')).to.deep.equal([$(3), lastHour, ms('2024-11-03T04:00:00Z')]);
      expect(await oneDay(4, '2024-11-05T04:30:00Z')).to.deep.equal([$(4), ms('2024-11-04T05:00:00Z'), ms('2024-11-03T04:00:00Z')]);
    });
  });
}

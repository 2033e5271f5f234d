// Subscription windows by plan term (docs/money-and-limits.md, subscription windows), named after the
// reference product's own cases: calendar days for multi-day plans, no midnight reset for a one-time
// daily card, term-aligned months, and no window at or after expiry. Each case is checked where it
// is decided: the store's window SQL (one by one and batched), the cached decision, the reservation.
import { expect } from 'chai';
import request from 'supertest';
import type { BillingCore } from '../../lib/billing-core.js';
import type { BillingSubject, SubscriptionEntity } from '../../lib/types.js';
import { T0, describeChain } from '../helpers/chain-harness.js';
import { uniqueSuffix } from '../helpers/services.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const GROUP = 'g-term';
const at = (iso: string) => Date.parse(iso);

describeChain('subscription terms', (env) => {
  /** A subscriber to GROUP whose term is [startsAt, expiresAt), with the given group limits. */
  async function plan(startsAt: number, expiresAt: number, limits: { dailyLimitUsd?: string; monthlyLimitUsd?: string }) {
    const { core } = env();
    const userId = env().userId();
    await core.admin.upsertSubscription({ userId, groupId: GROUP, startsAt, expiresAt });
    const subject: BillingSubject = {
      user: { id: userId },
      group: { id: GROUP, billingType: 'subscription', ...limits },
      subscription: { id: `sub-${userId}` },
    };
    const app = env().app({ subject });
    return {
      userId,
      subject,
      /** The HTTP status the chain answers now, from the cache. */
      status: async () => (await request(app.callback()).post('/')).status,
      /** The same decision with the cache entry dropped first, so it is made on the store's row. */
      statusFromStore: async () => {
        await core.invalidateSubscription(userId, GROUP);
        return (await request(app.callback()).post('/')).status;
      },
      spend: (core: BillingCore, costUsd: string) => core.settle({ requestId: `req-${uniqueSuffix()}`, subject, costUsd }),
      row: async (): Promise<SubscriptionEntity> =>
        (await env().realStore.getActiveSubscription(userId, GROUP, { nowMs: env().clock.now(), timezone: 'UTC' }))!,
    };
  }

  it('daily resets at midnight and not on a rolling anchor', async () => {
    const { core, clock } = env();
    const sub = await plan(T0, T0 + 30 * DAY, { dailyLimitUsd: '1' });
    await sub.spend(core, '1'); // 10:00 on the 4th
    expect(await sub.status()).to.equal(429);
    clock.set(at('2026-03-05T00:00:00Z'));
    expect(await sub.status()).to.equal(200, 'a new calendar day, 14 h after first use');
    await sub.spend(core, '0.25');
    const row = await sub.row();
    expect([row.dailyUsage, row.dailyStartMs]).to.deep.equal([25_000_000n, at('2026-03-05T00:00:00Z')]);
  });

  it('no reset within the same calendar day', async () => {
    const { core, clock } = env();
    const sub = await plan(at('2026-03-04T00:00:00Z'), at('2026-03-20T00:00:00Z'), { dailyLimitUsd: '1' });
    clock.set(at('2026-03-04T00:30:00Z'));
    await sub.spend(core, '0.5');
    clock.set(at('2026-03-04T23:59:59.999Z'));
    await sub.spend(core, '0.5');
    expect(await sub.status()).to.equal(429);
    expect(await sub.statusFromStore()).to.equal(429);
    expect((await sub.row()).dailyUsage).to.equal(100_000_000n);
  });

  it('next daily reset of a multi-day plan is the next midnight', async () => {
    const { core } = env();
    const sub = await plan(T0, T0 + 2 * DAY, { dailyLimitUsd: '1' });
    await sub.spend(core, '1');
    const res = await request(env().app({ subject: sub.subject }).callback())
      .post('/')
      .expect(429);
    expect(res.headers['retry-after']).to.equal(String(14 * 3600), '10:00 → 00:00 the next day');
  });

  it('a one-time daily card is exempt from the midnight reset and gets no second quota after midnight', async () => {
    const { core, clock } = env();
    const starts = at('2026-03-04T20:00:00Z');
    clock.set(starts);
    const card = await plan(starts, starts + DAY, { dailyLimitUsd: '1' });
    await card.spend(core, '1');
    expect(await card.status()).to.equal(429);
    clock.set(at('2026-03-05T00:00:00Z'));
    expect(await card.status()).to.equal(429, 'cached decision after midnight');
    expect(await card.statusFromStore()).to.equal(429, 'decision on the store row after midnight');
    clock.set(starts + DAY - 1);
    expect(await card.status()).to.equal(429, 'the last millisecond of the card');
    const row = await card.row();
    expect([row.dailyUsage, row.dailyStartMs]).to.deep.equal([100_000_000n, starts], 'the day began at first use');
  });

  it("a one-time daily card keeps one day's window across midnight in the store, one by one and batched, and in its reservations", async () => {
    const { core, clock } = env();
    const starts = at('2026-03-04T22:00:00Z');
    clock.set(at('2026-03-04T23:00:00Z'));
    const card = await plan(starts, starts + 12 * HOUR, { dailyLimitUsd: '1' });
    await card.spend(core, '0.3');
    clock.set(at('2026-03-05T01:00:00Z'));
    await card.spend(core, '0.1');
    // Settled together, these share one transaction where the store batches.
    await Promise.all(Array.from({ length: 4 }, () => card.spend(core, '0.05')));
    const row = await card.row();
    expect([row.dailyUsage, row.dailyStartMs]).to.deep.equal([60_000_000n, at('2026-03-04T23:00:00Z')]);
    // $0.40 left: a hold of $0.50 does not fit, one of $0.40 does.
    const refused = await core.check(card.subject, { estimateUsd: '0.5' });
    expect(refused.allowed).to.equal(false);
    if (!refused.allowed) expect(refused.error.code).to.equal('DAILY_LIMIT_EXCEEDED');
    expect((await core.check(card.subject, { estimateUsd: '0.4' })).allowed).to.equal(true);
  });

  it('a plan one millisecond longer than a day is not a card: it resets at midnight', async () => {
    const { core, clock } = env();
    const starts = at('2026-03-04T20:00:00Z');
    clock.set(starts);
    const sub = await plan(starts, starts + DAY + 1, { dailyLimitUsd: '1' });
    await sub.spend(core, '1');
    clock.set(at('2026-03-05T00:00:00Z'));
    expect(await sub.status()).to.equal(200);
    expect(await sub.statusFromStore()).to.equal(200);
  });

  it('a 30-day plan does not reset its monthly window before expiry', async () => {
    const { core, clock } = env();
    const sub = await plan(T0, T0 + 30 * DAY, { monthlyLimitUsd: '1' });
    await sub.spend(core, '1');
    clock.set(T0 + 30 * DAY - 1);
    expect(await sub.status()).to.equal(429);
    expect(await sub.statusFromStore()).to.equal(429);
    clock.set(T0 + 30 * DAY);
    expect(await sub.status()).to.equal(403, 'exact expiry is rejected');
  });

  it('a window never starts at or after expiresAt', async () => {
    const { core, clock } = env();
    const expires = T0 + 45 * DAY;
    const sub = await plan(T0, expires, { monthlyLimitUsd: '100' });
    await sub.spend(core, '1');
    for (const t of [T0 + 30 * DAY, T0 + 44 * DAY, expires - 1]) {
      clock.set(t);
      await sub.spend(core, '1');
      const row = await sub.row();
      expect(row.monthlyStartMs).to.equal(T0 + 30 * DAY, 'the second month starts 30 × 24 h after the first');
      expect(row.weeklyStartMs! < expires && row.dailyStartMs! < expires).to.equal(true);
    }
  });
});

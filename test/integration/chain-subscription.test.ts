// Behaviour matrix, docs/behaviour.md#the-chain-in-order, docs/behaviour.md#subscription, docs/behaviour.md#errors-and-responses: subscription mode, validity, group spend windows and their Retry-After, on both backend pairs.
import { expect } from 'chai';
import request from 'supertest';
import type { BillingCore } from '../../lib/billing-core.js';
import type { BillingSubject, SubscriptionStatus } from '../../lib/types.js';
import { T0, describeChain } from '../helpers/chain-harness.js';
import { uniqueSuffix } from '../helpers/services.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const GROUP = 'g-pro';
const storeDown = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

type Limits = Pick<NonNullable<BillingSubject['group']>, 'dailyLimitUsd' | 'weeklyLimitUsd' | 'monthlyLimitUsd'>;
interface Check {
  check: string;
  outcome: string;
  reason?: string;
  source?: string;
  windows?: { window: string; limit: string | null; usage: string }[];
}

function subscriptionSubject(userId: string, limits: Limits = {}, extra: Partial<BillingSubject> = {}): BillingSubject {
  return { user: { id: userId }, group: { id: GROUP, billingType: 'subscription', ...limits }, subscription: { id: `sub-${userId}` }, ...extra };
}

const record = (body: { decision: { checks: Check[] } }, check: string) => body.decision.checks.find((c) => c.check === check);

describeChain('subscriptionCheck', (env) => {
  /** A user with an active subscription to GROUP (expiring long after every window the tests walk through). */
  async function subscribed(limits: Limits = {}, options: { core?: BillingCore; status?: SubscriptionStatus; expiresAt?: number } = {}) {
    const core = options.core ?? env().core;
    const userId = env().userId();
    await core.admin.upsertSubscription({ userId, groupId: GROUP, expiresAt: options.expiresAt ?? T0 + 90 * DAY, status: options.status ?? 'active' });
    const subject = subscriptionSubject(userId, limits);
    return { core, userId, subject, app: env().app({ core, subject }) };
  }

  const spend = (core: BillingCore, subject: BillingSubject, costUsd: string) => core.settle({ requestId: `req-${uniqueSuffix()}`, subject, costUsd });

  it('an active subscription within its limits → 200 from the cache; balance and platform quota are skipped, not read', async () => {
    const { store } = env();
    const userId = env().userId(); // no balance account at all: balance mode would answer 403
    await env().core.admin.upsertSubscription({ userId, groupId: GROUP, expiresAt: T0 + DAY });
    const subject = subscriptionSubject(userId, { dailyLimitUsd: '5' }, { platform: 'openai' });
    await spend(env().core, subject, '1.25');
    store.reset();
    const res = await request(env().app({ subject }).callback()).post('/').expect(200);
    expect(record(res.body, 'balance')).to.deep.include({ outcome: 'skipped', reason: 'subscription_mode' });
    expect(record(res.body, 'platformQuota')).to.deep.include({ outcome: 'skipped', reason: 'subscription_mode' });
    const sub = record(res.body, 'subscription');
    expect(sub).to.deep.include({ outcome: 'allowed', source: 'cache' });
    expect(sub?.windows?.[0]).to.deep.include({ window: 'daily', limit: '5.00000000', usage: '1.25000000' });
    expect(store.count('getActiveSubscription')).to.equal(0, 'settlement and admin writes keep the cache warm');
    expect(store.count('getBalance') + store.count('getPlatformQuota')).to.equal(0);
    expect(env().core.breakerState).to.equal('closed');
  });

  it('a miss loads the active subscription from the store once and fills the cache; a cache error also reads the store', async () => {
    const { core, store, cache } = env();
    const { userId, subject, app } = await subscribed({ dailyLimitUsd: '1' });
    await core.invalidateSubscription(userId, GROUP);
    store.reset();
    await Promise.all(Array.from({ length: 6 }, () => request(app.callback()).post('/').expect(200)));
    expect(store.count('getActiveSubscription')).to.equal(1, 'concurrent misses share one store read');
    await core.close(); // drains the asynchronous fill
    const again = env().makeCore();
    store.reset();
    const warm = await request(env().app({ core: again, subject }).callback())
      .post('/')
      .expect(200);
    expect(store.count('getActiveSubscription')).to.equal(0);
    expect(record(warm.body, 'subscription')).to.deep.include({ source: 'cache' });

    cache.failWith(new Error("READONLY You can't write against a read only replica."), ['readBatch']);
    const fallback = await request(env().app({ core: again, subject }).callback())
      .post('/')
      .expect(200);
    cache.failWith(null);
    expect(record(fallback.body, 'subscription')).to.deep.include({ outcome: 'allowed', source: 'store' });
    expect(JSON.stringify(fallback.body)).to.not.include('READONLY');
  });

  for (const status of ['suspended', 'revoked', 'expired'] as const) {
    it(`status '${status}' → 403 SUBSCRIPTION_INVALID with x-should-retry: false, from the cache and from the store`, async () => {
      const { core } = env();
      const { userId, app } = await subscribed({}, { status });
      const res = await request(app.callback()).post('/').expect(403);
      expect(res.body).to.deep.equal({
        error: { type: 'permission_error', code: 'subscription_invalid', message: 'No active subscription for this group: it has expired or been revoked.' },
      });
      expect(res.headers['x-should-retry']).to.equal('false');
      expect(res.headers['retry-after']).to.equal(undefined);
      await core.invalidateSubscription(userId, GROUP);
      const fromStore = await request(app.callback()).post('/').expect(403);
      expect(fromStore.body.error.code).to.equal('subscription_invalid');
      expect(core.breakerState).to.equal('closed');
    });
  }

  it('SUBSCRIPTION_INVALID in the Anthropic format', async () => {
    const { subject } = await subscribed({}, { status: 'revoked' });
    const res = await request(env().app({ subject, format: 'anthropic' }).callback())
      .post('/')
      .expect(403);
    expect(res.body).to.deep.equal({
      type: 'error',
      error: { type: 'permission_error', message: 'No active subscription for this group: it has expired or been revoked.' },
    });
    expect(res.headers['x-should-retry']).to.equal('false');
  });

  it('valid until expiresAt; exactly at it → 403 SUBSCRIPTION_INVALID, as the reference product rejects exact expiry (cached entry and store read alike)', async () => {
    const { core, clock } = env();
    const expiresAt = T0 + HOUR;
    const { userId, app } = await subscribed({}, { expiresAt });
    clock.set(expiresAt - 1);
    await request(app.callback()).post('/').expect(200);
    clock.set(expiresAt);
    const cached = await request(app.callback()).post('/').expect(403);
    expect(cached.body.error.code).to.equal('subscription_invalid');

    await core.invalidateSubscription(userId, GROUP);
    clock.set(expiresAt - 1);
    await request(app.callback()).post('/').expect(200);
    await core.invalidateSubscription(userId, GROUP);
    clock.set(expiresAt);
    const stored = await request(app.callback()).post('/').expect(403);
    expect(stored.body.error.code).to.equal('subscription_invalid');
  });

  it('no subscription row → 403 SUBSCRIPTION_INVALID, and never a breaker failure', async () => {
    const { core, store } = env();
    const app = env().app({ subject: subscriptionSubject(env().userId('nosub'), { dailyLimitUsd: '1' }) });
    store.reset();
    for (let i = 0; i < 8; i++) {
      const res = await request(app.callback()).post('/').expect(403);
      expect(res.body.error.code).to.equal('subscription_invalid');
      expect(res.headers['x-should-retry']).to.equal('false');
    }
    expect(store.count('getActiveSubscription')).to.equal(8, 'a missing row is not cached');
    expect(core.breakerState).to.equal('closed');
  });

  it('store down on a miss → 503 BILLING_SERVICE_ERROR and a breaker failure (the 5th opens it)', async () => {
    const { core, store } = env();
    const { userId, app } = await subscribed({ dailyLimitUsd: '1' });
    await core.invalidateSubscription(userId, GROUP);
    store.failWith(storeDown(), ['getActiveSubscription']);
    for (let i = 0; i < 4; i++) {
      const res = await request(app.callback()).post('/').expect(503);
      expect(res.body.error).to.deep.equal({
        type: 'api_error',
        code: 'billing_service_error',
        message: 'Billing service temporarily unavailable. Please retry later.',
      });
      expect(JSON.stringify(res.body) + JSON.stringify(res.headers)).to.not.match(/ECONNREFUSED|5432/);
    }
    expect(core.breakerState).to.equal('closed');
    await request(app.callback()).post('/').expect(503);
    expect(core.breakerState).to.equal('open');
    store.failWith(null);
  });

  it('windows are checked daily → weekly → monthly; each 429 carries Retry-After to its own reset on the manual clock', async () => {
    const { core, clock } = env();
    const { subject, app } = await subscribed({ dailyLimitUsd: '1', weeklyLimitUsd: '1', monthlyLimitUsd: '1' });
    await spend(core, subject, '1'); // at T0 = Wed 2026-03-04 10:00 UTC: every window starts (weekly, monthly at T0)
    const expectDenial = async (code: string, retryAfter: number) => {
      const res = await request(app.callback()).post('/').expect(429);
      expect(res.body.error).to.deep.include({ type: 'rate_limit_error', code });
      expect(res.headers['retry-after']).to.equal(String(retryAfter));
      // Beyond the 60 s the OpenAI and Anthropic SDKs wait for, they are told not to retry at all.
      expect(res.headers['x-should-retry']).to.equal(retryAfter > 60 ? 'false' : undefined);
    };
    await expectDenial('daily_limit_exceeded', 14 * 3600); // until 2026-03-05 00:00 UTC
    clock.set(Date.UTC(2026, 2, 5) - 1);
    await expectDenial('daily_limit_exceeded', 1);
    clock.set(Date.UTC(2026, 2, 5)); // the daily window has expired and counts 0
    await expectDenial('weekly_limit_exceeded', (7 * DAY - 14 * HOUR) / 1000);
    clock.set(T0 + 7 * DAY - 1);
    await expectDenial('weekly_limit_exceeded', 1);
    clock.set(T0 + 7 * DAY); // exactly 7×24 h after the start: expired
    await expectDenial('monthly_limit_exceeded', (23 * DAY) / 1000);
    clock.set(T0 + 30 * DAY - 1);
    await expectDenial('monthly_limit_exceeded', 1);
    clock.set(T0 + 30 * DAY);
    const res = await request(app.callback()).post('/').expect(200);
    expect(record(res.body, 'subscription')?.windows?.map((w) => w.usage)).to.deep.equal(['0.00000000', '0.00000000', '0.00000000']);
  });

  it('Retry-After rounds the seconds to each reset up (daily to the next midnight, weekly start + 7×24 h, monthly start + 30×24 h)', async () => {
    const { core, clock } = env();
    const cases = [
      { limits: { dailyLimitUsd: '2' }, code: 'daily_limit_exceeded', retryAfter: 14 * 3600 - 1 },
      { limits: { weeklyLimitUsd: '2' }, code: 'weekly_limit_exceeded', retryAfter: 7 * 86400 - 1 },
      { limits: { monthlyLimitUsd: '2' }, code: 'monthly_limit_exceeded', retryAfter: 30 * 86400 - 1 },
    ];
    for (const { limits, code, retryAfter } of cases) {
      clock.set(T0);
      const { subject, app } = await subscribed(limits);
      await spend(core, subject, '2');
      clock.set(T0 + 1500); // 1.5 s later: ceil(x − 1.5) = x − 1
      const res = await request(app.callback()).post('/').expect(429);
      expect(res.body.error.code).to.equal(code);
      expect(res.headers['retry-after']).to.equal(String(retryAfter));
    }
  });

  for (const window of ['daily', 'weekly', 'monthly'] as const) {
    it(`${window}: 1e-8 below the limit passes, exactly at the limit rejects`, async () => {
      const { core } = env();
      const { subject, app } = await subscribed({ [`${window}LimitUsd`]: '3.5' });
      await spend(core, subject, '3.49999999');
      const below = await request(app.callback()).post('/').expect(200);
      expect(record(below.body, 'subscription')?.windows?.find((w) => w.window === window)).to.deep.include({ limit: '3.50000000', usage: '3.49999999' });
      await spend(core, subject, '0.00000001');
      const at = await request(app.callback()).post('/').expect(429);
      expect(at.body.error.code).to.equal(`${window}_limit_exceeded`);
    });
  }

  it('a group limit of 0, null or absent is unlimited', async () => {
    const { core } = env();
    const { subject, app } = await subscribed({ dailyLimitUsd: 0, weeklyLimitUsd: null });
    await spend(core, subject, '5000');
    const res = await request(app.callback()).post('/').expect(200);
    expect(record(res.body, 'subscription')?.windows?.map((w) => [w.limit, w.usage])).to.deep.equal([
      [null, '5000.00000000'],
      [null, '5000.00000000'],
      [null, '5000.00000000'],
    ]);
    const zeros = subscriptionSubject(String(subject.user.id), { dailyLimitUsd: '0', weeklyLimitUsd: '0.00', monthlyLimitUsd: 0 });
    await request(env().app({ subject: zeros }).callback())
      .post('/')
      .expect(200);
  });

  it('an expired window counts 0 on a cached entry, and the next settlement restarts it at its own cost', async () => {
    const { core, clock, store } = env();
    const { subject, app } = await subscribed({ dailyLimitUsd: '1' });
    await spend(core, subject, '1');
    await request(app.callback()).post('/').expect(429);
    clock.set(Date.UTC(2026, 2, 5, 9, 0));
    store.reset();
    const next = await request(app.callback()).post('/').expect(200);
    const daily = record(next.body, 'subscription')?.windows?.[0];
    expect(daily).to.deep.include({ window: 'daily', usage: '0.00000000' });
    await spend(core, subject, '0.4');
    const after = await request(app.callback()).post('/').expect(200);
    expect(record(after.body, 'subscription')?.windows?.[0]).to.deep.include({ usage: '0.40000000' });
  });

  it('the daily window follows the configured time zone (Asia/Tokyo, UTC+9): resets at local midnight', async () => {
    const { clock, makeCore } = env();
    const tokyo = makeCore({ timezone: 'Asia/Tokyo' });
    const { subject, app } = await subscribed({ dailyLimitUsd: '1' }, { core: tokyo });
    await spend(tokyo, subject, '1'); // T0 is 19:00 in Tokyo; local midnight is 2026-03-04 15:00 UTC
    const res = await request(app.callback()).post('/').expect(429);
    expect(res.body.error.code).to.equal('daily_limit_exceeded');
    expect(res.headers['retry-after']).to.equal(String(5 * 3600));
    clock.set(Date.UTC(2026, 2, 4, 15, 0) - 1);
    await request(app.callback()).post('/').expect(429);
    clock.set(Date.UTC(2026, 2, 4, 15, 0)); // still 2026-03-04 in UTC, already the 5th in Tokyo
    await request(app.callback()).post('/').expect(200);
  });

  it('a subscription-type group without a subscription object is billed in balance mode', async () => {
    const { core, store } = env();
    const userId = env().userId();
    // Even with a subscription row whose daily limit is tiny, the subject carries no subscription.
    await core.admin.upsertSubscription({ userId, groupId: GROUP, expiresAt: T0 + DAY });
    const subject: BillingSubject = { user: { id: userId }, group: { id: GROUP, billingType: 'subscription', dailyLimitUsd: '0.1' }, subscription: null };
    const app = env().app({ subject });
    const missing = await request(app.callback()).post('/').expect(403);
    expect(missing.body.error.code).to.equal('billing_subject_not_found');

    await core.admin.topUp(userId, '1');
    await core.settle({ requestId: `req-${uniqueSuffix()}`, subject, costUsd: '0.4' });
    expect(await core.getBalance(userId)).to.equal('0.60000000');
    store.reset();
    const res = await request(app.callback()).post('/').expect(200);
    expect(record(res.body, 'subscription')).to.deep.include({ outcome: 'skipped', reason: 'balance_mode' });
    expect(record(res.body, 'balance')).to.deep.include({ outcome: 'allowed' });
    expect(store.count('getActiveSubscription')).to.equal(0);
    const row = await env().realStore.getActiveSubscription(userId, GROUP, { nowMs: T0, timezone: 'UTC' });
    expect(row?.dailyUsage).to.equal(0n, 'a balance-mode settlement does not touch the subscription');
  });
});

// Behaviour matrix, docs/behaviour.md#platform-quota: the user × platform quota, its windows, sentinel and fail-open rules.
import { expect } from 'chai';
import request from 'supertest';
import { TABLES } from '../../lib/store/tables.js';
import { balanceSubject, describeChain } from '../helpers/chain-harness.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describeChain('platformQuota', (env) => {
  async function userWithQuota(limits: { dailyLimitUsd?: string | null; weeklyLimitUsd?: string | null; monthlyLimitUsd?: string | null }) {
    const { core } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '100');
    await core.admin.setPlatformQuota(userId, 'anthropic', limits);
    return { userId, subject: balanceSubject(userId, { platform: 'anthropic' }) };
  }

  const quotaRecord = (body: { decision: { checks: { check: string }[] } }) => body.decision.checks.find((c) => c.check === 'platformQuota');

  it('no quota row → allowed, and a sentinel is cached so the next request does not read the store', async () => {
    const { core, store } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1');
    const app = env().app({ subject: balanceSubject(userId, { platform: 'openai' }) });
    store.reset();
    const first = await request(app.callback()).post('/').expect(200);
    expect(quotaRecord(first.body)).to.include({ outcome: 'allowed', reason: 'no_quota' });
    expect(store.count('getPlatformQuota')).to.equal(1);
    await core.close(); // the sentinel fill is asynchronous
    const again = env().makeCore();
    store.reset();
    const second = await request(
      env()
        .app({ core: again, subject: balanceSubject(userId, { platform: 'openai' }) })
        .callback(),
    )
      .post('/')
      .expect(200);
    expect(store.count('getPlatformQuota')).to.equal(0);
    expect(quotaRecord(second.body)).to.include({ outcome: 'allowed', source: 'cache' });
  });

  it('the sentinel is written only when the cache read succeeded', async () => {
    const { core, store, cache } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1');
    cache.failWith(new Error('cache down'), ['readBatch']);
    cache.reset();
    await request(
      env()
        .app({ subject: balanceSubject(userId, { platform: 'openai' }) })
        .callback(),
    )
      .post('/')
      .expect(200);
    await core.close();
    expect(cache.count('fill')).to.equal(0);
    cache.failWith(null);
    store.reset();
    const again = env().makeCore();
    await request(
      env()
        .app({ core: again, subject: balanceSubject(userId, { platform: 'openai' }) })
        .callback(),
    )
      .post('/')
      .expect(200);
    expect(store.count('getPlatformQuota')).to.equal(1, 'nothing was cached, so the store is read again');
  });

  it('an empty platform skips the check', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1');
    const res = await request(
      env()
        .app({ subject: balanceSubject(userId, { platform: null }) })
        .callback(),
    )
      .post('/')
      .expect(200);
    expect(quotaRecord(res.body)).to.include({ outcome: 'skipped', reason: 'no_platform' });
  });

  it('null is unlimited and 0 blocks completely', async () => {
    const open = await userWithQuota({ dailyLimitUsd: null, weeklyLimitUsd: null, monthlyLimitUsd: null });
    await request(env().app({ subject: open.subject }).callback())
      .post('/')
      .expect(200);
    const blocked = await userWithQuota({ dailyLimitUsd: null, weeklyLimitUsd: '0', monthlyLimitUsd: null });
    const res = await request(env().app({ subject: blocked.subject }).callback())
      .post('/')
      .expect(429);
    expect(res.body.error.code).to.equal('user_platform_weekly_quota_exhausted');
    expect(res.body.error.type).to.equal('rate_limit_error');
  });

  it('usage exactly at the limit rejects with Retry-After to the start of tomorrow and windowResetsAt; just below passes', async () => {
    const { core, clock } = env();
    const { userId, subject } = await userWithQuota({ dailyLimitUsd: '1.00' });
    await core.settle({ requestId: `r-${userId}-1`, subject, costUsd: '0.99999999' });
    await request(env().app({ subject }).callback()).post('/').expect(200);
    await core.settle({ requestId: `r-${userId}-2`, subject, costUsd: '0.00000001' });
    const res = await request(env().app({ subject }).callback()).post('/').expect(429);
    expect(res.body.error.code).to.equal('user_platform_daily_quota_exhausted');
    const tomorrow = Date.UTC(2026, 2, 5);
    expect(res.headers['retry-after']).to.equal(String(Math.ceil((tomorrow - clock.now()) / 1000)));
    const decision = await core.check(subject);
    expect(decision.allowed).to.equal(false);
    if (!decision.allowed) expect(decision.error.metadata).to.include({ windowResetsAt: new Date(tomorrow).toISOString() });
  });

  it('midnight rolls the daily window over with no store read and no cache write', async () => {
    const { core, clock, store, cache } = env();
    clock.set(Date.UTC(2026, 2, 4, 23, 58));
    const { userId, subject } = await userWithQuota({ dailyLimitUsd: '1' });
    await core.settle({ requestId: `r-${userId}`, subject, costUsd: '1' });
    const app = env().app({ subject });
    await request(app.callback()).post('/').expect(429);
    store.reset();
    cache.reset();
    clock.set(Date.UTC(2026, 2, 5, 0, 0, 1));
    const res = await request(app.callback()).post('/').expect(200);
    await core.close();
    expect(quotaRecord(res.body)).to.include({ outcome: 'allowed', source: 'cache' });
    expect(store.total()).to.equal(0);
    expect(cache.count('put') + cache.count('fill') + cache.count('invalidate')).to.equal(0);
  });

  it('a new week (Monday 00:00) restarts the weekly window with no store read', async () => {
    const { core, clock, store } = env();
    clock.set(Date.UTC(2026, 2, 8, 23, 59)); // Sunday
    const { userId, subject } = await userWithQuota({ weeklyLimitUsd: '2' });
    await core.settle({ requestId: `r-${userId}`, subject, costUsd: '2' });
    const app = env().app({ subject });
    const denied = await request(app.callback()).post('/').expect(429);
    expect(denied.headers['retry-after']).to.equal('60');
    store.reset();
    clock.set(Date.UTC(2026, 2, 9, 0, 0)); // Monday
    await request(app.callback()).post('/').expect(200);
    expect(store.total()).to.equal(0);
  });

  it('the 30-day window: expired exactly 30×24 h after its start, not 1 ms before, with no store read', async () => {
    const { core, clock, store, knex, backend } = env();
    const { userId, subject } = await userWithQuota({ monthlyLimitUsd: '5' });
    const start = clock.now() - 30 * DAY + 1;
    const usage = backend === 'memory+sqlite' ? 500_000_000 : '5.00000000';
    await knex(TABLES.platformQuotas)
      .where({ user_id: userId, platform: 'anthropic' })
      .update({ monthly_usage: usage, monthly_start_ms: start, version: knex.raw('version + 1') });
    await core.invalidatePlatformQuota(userId, 'anthropic');
    const app = env().app({ subject });
    const denied = await request(app.callback()).post('/').expect(429);
    expect(denied.body.error.code).to.equal('user_platform_monthly_quota_exhausted');
    expect(denied.headers['retry-after']).to.equal('1', '1 ms left rounds up to 1 s');
    await core.close();
    store.reset();
    const warm = env().makeCore();
    clock.advance(1);
    const res = await request(env().app({ core: warm, subject }).callback())
      .post('/')
      .expect(200);
    expect(quotaRecord(res.body)).to.include({ source: 'cache' });
    expect(store.count('getPlatformQuota')).to.equal(0);
  });

  it('daily, weekly and monthly are checked in that order', async () => {
    const { core } = env();
    const { userId, subject } = await userWithQuota({ dailyLimitUsd: '1', weeklyLimitUsd: '1', monthlyLimitUsd: '1' });
    await core.settle({ requestId: `r-${userId}`, subject, costUsd: '1' });
    const res = await request(env().app({ subject }).callback()).post('/').expect(429);
    expect(res.body.error.code).to.equal('user_platform_daily_quota_exhausted');
    await core.admin.setPlatformQuota(userId, 'anthropic', { dailyLimitUsd: null, weeklyLimitUsd: '1', monthlyLimitUsd: '1' });
    const weekly = await request(env().app({ subject }).callback()).post('/').expect(429);
    expect(weekly.body.error.code).to.equal('user_platform_weekly_quota_exhausted');
    await core.admin.setPlatformQuota(userId, 'anthropic', { monthlyLimitUsd: '1' });
    const monthly = await request(env().app({ subject }).callback()).post('/').expect(429);
    expect(monthly.body.error.code).to.equal('user_platform_monthly_quota_exhausted');
  });

  it('a store error fails open', async () => {
    const { core, store } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1');
    store.failWith(new Error('relation does not exist'), ['getPlatformQuota']);
    const res = await request(
      env()
        .app({ subject: balanceSubject(userId, { platform: 'gemini' }) })
        .callback(),
    )
      .post('/')
      .expect(200);
    expect(quotaRecord(res.body)).to.include({ outcome: 'failed_open' });
    store.failWith(null);
  });

  it('a cold exhausted quota denies all of 50 concurrent requests with a JSON body: a body read before the chain is not a client that left', async () => {
    const { core, store } = env();
    const { userId, subject } = await userWithQuota({ dailyLimitUsd: '0.01' });
    await core.settle({ requestId: `r-${userId}`, subject, costUsd: '0.01' });
    await core.invalidatePlatformQuota(userId, 'anthropic');
    store.reset();
    const app = env().app({ subject });
    const statuses = await Promise.all(
      Array.from({ length: 50 }, () =>
        request(app.callback())
          .post('/')
          .send({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] })
          .then((res) => res.status),
      ),
    );
    expect(statuses.filter((status) => status === 200)).to.have.length(0);
    expect(new Set(statuses)).to.deep.equal(new Set([429]));
    expect(store.count('getPlatformQuota')).to.be.at.least(1);
  });

  it('a request cancelled while its quota load is shared is let through and does not fail the others', async () => {
    const { core, store } = env();
    const { userId, subject } = await userWithQuota({ dailyLimitUsd: '0' });
    await core.invalidatePlatformQuota(userId, 'anthropic');
    let release: () => void = () => {};
    store.holdUntil(new Promise<void>((resolve) => (release = resolve)), ['getPlatformQuota']);
    store.reset();
    const { normalizeSubject } = await import('../../lib/subject.js');
    const normalized = normalizeSubject(subject);
    const cancelled = new AbortController();
    const a = core.beginRequest(normalized, () => cancelled.signal);
    const b = core.beginRequest(normalized);
    const pendingA = a.run('platformQuota');
    const pendingB = b.run('platformQuota').then(
      () => 'allowed',
      (err: { code?: string }) => err.code,
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    cancelled.abort();
    await pendingA;
    expect(a.decision.checks.at(-1)).to.include({ check: 'platformQuota', outcome: 'allowed', reason: 'cancelled' });
    release();
    store.holdUntil(null);
    expect(await pendingB).to.equal('USER_PLATFORM_DAILY_QUOTA_EXHAUSTED');
    expect(store.count('getPlatformQuota')).to.equal(1);
  });

  it('subscription mode skips the platform quota', async () => {
    const { core } = env();
    const { userId } = await userWithQuota({ dailyLimitUsd: '0' });
    await core.admin.upsertSubscription({ userId, groupId: 'g-sub', expiresAt: env().clock.now() + 30 * DAY });
    const subject = {
      user: { id: userId },
      group: { id: 'g-sub', billingType: 'subscription' as const },
      subscription: { id: 's1' },
      platform: 'anthropic',
    };
    const res = await request(env().app({ subject }).callback()).post('/').expect(200);
    expect(quotaRecord(res.body)).to.include({ outcome: 'skipped', reason: 'subscription_mode' });
  });
});

// Behaviour matrix, docs/behaviour.md#the-chain-in-order, docs/behaviour.md#requests-per-minute: per-minute caps for users and users within groups, overrides, side effects and fail-open, on both backend pairs.
import { expect } from 'chai';
import { Redis } from 'ioredis';
import request from 'supertest';
import type { BillingCore } from '../../lib/billing-core.js';
import type { BillingSubject } from '../../lib/types.js';
import { T0, describeChain } from '../helpers/chain-harness.js';
import { REDIS_URL } from '../helpers/services.js';

const MINUTE = 60_000;
const GROUP = 'g-team';

type User = Omit<BillingSubject['user'], 'id'>;
interface Check {
  check: string;
  outcome: string;
  reason?: string;
  source?: string;
  windows?: { window: string; limit: string | null; usage: string }[];
}
interface Body {
  decision: { checks: Check[] };
}

const group = (rpmLimit: number): NonNullable<BillingSubject['group']> => ({ id: GROUP, billingType: 'standard', rpmLimit });
const subjectOf = (userId: string, user: User = {}, inGroup: BillingSubject['group'] = null): BillingSubject => ({
  user: { id: userId, ...user },
  group: inGroup,
});
const rpmRecord = (body: Body) => body.decision.checks.find((c) => c.check === 'rpm');
const usage = (body: Body, window: 'user' | 'group') => rpmRecord(body)?.windows?.find((w) => w.window === window)?.usage;
/** Retry-After of a bucket at `ms`: whole seconds to the end of its minute, at least 1 (docs/behaviour.md#requests-per-minute). */
const secondsLeft = (ms: number) => Math.max(1, Math.ceil(((Math.floor(ms / MINUTE) + 1) * MINUTE - ms) / 1000));

describeChain('rpmLimit', (env) => {
  let redis: Redis | undefined;
  after(() => {
    redis?.disconnect();
    redis = undefined;
  });

  /** Now on the clock the cache counts with: the manual clock for the memory cache, Redis TIME for Redis. */
  async function cacheNowMs(): Promise<number> {
    if (env().backend === 'memory+sqlite') return env().clock.now();
    redis ??= new Redis(REDIS_URL);
    const [sec, usec] = await redis.time();
    return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  }

  /**
   * Redis buckets follow real time, so a minute may end inside a test: when the body fails and the
   * Redis minute changed meanwhile, it runs once more (with new users; a second crossing is impossible).
   */
  async function inOneBucket(body: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const bucket = Math.floor((await cacheNowMs()) / MINUTE);
      try {
        return await body();
      } catch (err) {
        const crossed = Math.floor((await cacheNowMs()) / MINUTE) !== bucket;
        if (attempt >= 2 || env().backend === 'memory+sqlite' || !crossed) throw err;
      }
    }
  }

  async function fundedUser(core: BillingCore = env().core): Promise<string> {
    const userId = env().userId();
    await core.admin.topUp(userId, '100');
    return userId;
  }

  const post = (subject: BillingSubject, status: number, core?: BillingCore) =>
    request(
      env()
        .app({ subject, ...(core ? { core } : {}) })
        .callback(),
    )
      .post('/')
      .expect(status);

  it('a user cap of N lets exactly N through per minute; N+1 → 429 USER_RPM_EXCEEDED, Retry-After to the bucket end on the cache clock', async () => {
    await inOneBucket(async () => {
      const { clock, backend } = env();
      const subject = subjectOf(await fundedUser(), { rpmLimit: 3 });
      if (backend === 'memory+sqlite') {
        clock.set(T0 + 12_300); // 47.7 s left in the 10:00 bucket → 48
      } else {
        // Park the process clock half a minute away from Redis: only Redis TIME gives the right answer.
        clock.set(T0 + ((Math.floor((await cacheNowMs()) / 1000) + 30) % 60) * 1000);
      }
      for (let i = 1; i <= 3; i++) expect(usage((await post(subject, 200)).body, 'user')).to.equal(String(i));
      const before = await cacheNowMs();
      const denied = await post(subject, 429);
      const afterMs = await cacheNowMs();
      if (Math.floor(before / MINUTE) !== Math.floor(afterMs / MINUTE)) throw new Error('the bucket changed during the request');
      expect(denied.body.error).to.deep.equal({
        type: 'rate_limit_error',
        code: 'user_rpm_exceeded',
        message: 'Too many requests per minute. Please slow down.',
      });
      const retryAfter = Number(denied.headers['retry-after']);
      expect(retryAfter).to.be.within(secondsLeft(afterMs), secondsLeft(before));
      if (backend === 'memory+sqlite') {
        expect(retryAfter).to.equal(48);
        clock.set(T0 + MINUTE); // the next bucket starts from zero
        expect(usage((await post(subject, 200)).body, 'user')).to.equal('1');
      } else {
        expect(retryAfter).to.not.equal(secondsLeft(clock.now()), 'counted on Redis TIME, not the process clock');
      }
    });
  });

  it('the group cap counts per user within the group: two users each get N', async () => {
    await inOneBucket(async () => {
      const a = subjectOf(await fundedUser(), {}, group(2));
      const b = subjectOf(await fundedUser(), {}, group(2));
      for (const n of ['1', '2']) {
        expect(usage((await post(a, 200)).body, 'group')).to.equal(n);
        expect(usage((await post(b, 200)).body, 'group')).to.equal(n);
      }
      for (const subject of [a, b]) {
        const res = await post(subject, 429);
        expect(res.body.error).to.deep.equal({
          type: 'rate_limit_error',
          code: 'group_rpm_exceeded',
          message: 'Too many requests per minute for this group. Please slow down.',
        });
        expect(Number(res.headers['retry-after'])).to.be.within(1, 60);
      }
    });
  });

  it('an override > 0 from the subject replaces the group cap, above or below it, without a store lookup', async () => {
    await inOneBucket(async () => {
      const { store } = env();
      store.reset();
      for (const [groupCap, override] of [
        [1, 3],
        [5, 2],
      ] as const) {
        const subject = subjectOf(await fundedUser(), { groupRpmOverride: override }, group(groupCap));
        for (let i = 1; i <= override; i++) {
          const res = await post(subject, 200);
          expect(rpmRecord(res.body)?.windows?.find((w) => w.window === 'group')).to.deep.include({ limit: String(override), usage: String(i) });
        }
        expect((await post(subject, 429)).body.error.code).to.equal('group_rpm_exceeded');
      }
      expect(store.count('getRpmOverride')).to.equal(0);
    });
  });

  it('an override of 0 exempts the user from the group cap (no counting); null falls back to the group rpmLimit', async () => {
    await inOneBucket(async () => {
      const { store } = env();
      const userId = await fundedUser();
      store.reset();
      const exempt = subjectOf(userId, { rpmLimit: 100, groupRpmOverride: 0 }, group(1));
      for (let i = 1; i <= 4; i++) {
        const res = await post(exempt, 200);
        expect(rpmRecord(res.body)?.windows?.map((w) => w.window)).to.deep.equal(['user']);
      }
      const onlyExempt = await post(subjectOf(userId, { groupRpmOverride: 0 }, group(1)), 200);
      expect(rpmRecord(onlyExempt.body)).to.deep.include({ outcome: 'skipped', reason: 'no_caps' });

      const none = subjectOf(userId, { groupRpmOverride: null }, group(1));
      expect(usage((await post(none, 200)).body, 'group')).to.equal('1', 'nothing was counted while exempt');
      expect((await post(none, 429)).body.error.code).to.equal('group_rpm_exceeded');
      expect(store.count('getRpmOverride')).to.equal(0, 'null in the subject means "known to have none"');
    });
  });

  it('overrides looked up in the store are cached, "none" included; setRpmOverride takes effect on the next request', async () => {
    await inOneBucket(async () => {
      const { store, makeCore } = env();
      let core = makeCore();
      const userId = await fundedUser(core);
      const subject = subjectOf(userId, {}, group(1));
      // Each core is closed before the next request so that its asynchronous cache fill has landed.
      const step = async (status: number, storeReads: number) => {
        store.reset();
        const res = await post(subject, status, core);
        expect(store.count('getRpmOverride')).to.equal(storeReads, `store lookups for a ${status}`);
        await core.close();
        core = makeCore();
        return res;
      };
      expect(usage((await step(200, 1)).body, 'group')).to.equal('1');
      expect((await step(429, 0)).body.error.code).to.equal('group_rpm_exceeded', '"none" was cached: the group cap of 1 applies');

      await core.admin.setRpmOverride(userId, GROUP, 5);
      const raised = await step(200, 1);
      expect(rpmRecord(raised.body)?.windows?.[0]).to.deep.include({ window: 'group', limit: '5', usage: '3' });
      expect(usage((await step(200, 0)).body, 'group')).to.equal('4');

      await core.admin.setRpmOverride(userId, GROUP, 0);
      expect(rpmRecord((await step(200, 1)).body)).to.deep.include({ outcome: 'skipped', reason: 'no_caps' });

      await core.admin.setRpmOverride(userId, GROUP, null);
      expect((await step(429, 1)).body.error.code).to.equal('group_rpm_exceeded');
    });
  });

  it('an override lookup error counts as no override: the group cap applies', async () => {
    await inOneBucket(async () => {
      const { store, core } = env();
      const userId = await fundedUser();
      await core.admin.setRpmOverride(userId, GROUP, 10);
      store.failWith(new Error('connect ECONNREFUSED 127.0.0.1:5432'), ['getRpmOverride']);
      const subject = subjectOf(userId, {}, group(1));
      await post(subject, 200);
      const res = await post(subject, 429);
      store.failWith(null);
      expect(res.body.error.code).to.equal('group_rpm_exceeded');
    });
  });

  it('a request rejected at the group level does not count for the user; one rejected at the user level has counted for the group', async () => {
    await inOneBucket(async () => {
      const groupLimited = await fundedUser();
      const inGroup = subjectOf(groupLimited, { rpmLimit: 10, groupRpmOverride: null }, group(1));
      const first = await post(inGroup, 200);
      expect([usage(first.body, 'group'), usage(first.body, 'user')]).to.deep.equal(['1', '1']);
      expect((await post(inGroup, 429)).body.error.code).to.equal('group_rpm_exceeded');
      const alone = await post(subjectOf(groupLimited, { rpmLimit: 10 }), 200);
      expect(usage(alone.body, 'user')).to.equal('2', 'the group rejection did not increment the user counter');

      const userLimited = await fundedUser();
      const capped = subjectOf(userLimited, { rpmLimit: 1, groupRpmOverride: null }, group(10));
      const ok = await post(capped, 200);
      expect([usage(ok.body, 'group'), usage(ok.body, 'user')]).to.deep.equal(['1', '1']);
      expect((await post(capped, 429)).body.error.code).to.equal('user_rpm_exceeded');
      const groupOnly = await post(subjectOf(userLimited, { groupRpmOverride: null }, group(10)), 200);
      expect(usage(groupOnly.body, 'group')).to.equal('3', 'the user rejection had already incremented the group counter');
    });
  });

  it('a counter error fails open (200, outcome failed_open)', async () => {
    const { cache } = env();
    const subject = subjectOf(await fundedUser(), { rpmLimit: 1 });
    cache.failWith(new Error('LOADING Redis is loading the dataset in memory'), ['rpmHit']);
    for (let i = 0; i < 3; i++) {
      const res = await post(subject, 200);
      expect(rpmRecord(res.body)).to.deep.equal({ check: 'rpm', outcome: 'failed_open', reason: 'error', source: 'none' });
      expect(JSON.stringify(res.body)).to.not.include('LOADING');
    }
    cache.failWith(null);
    expect(cache.count('rpmHit')).to.equal(3);
  });

  it('RPM runs last: requests denied by the balance check consume no RPM', async () => {
    await inOneBucket(async () => {
      const { core, cache } = env();
      const userId = env().userId();
      await core.admin.setBalance(userId, '0');
      const subject = subjectOf(userId, { rpmLimit: 1 });
      cache.reset();
      for (let i = 0; i < 3; i++) expect((await post(subject, 403)).body.error.code).to.equal('insufficient_balance');
      expect(cache.count('rpmHit')).to.equal(0);
      await core.admin.topUp(userId, '1');
      expect(usage((await post(subject, 200)).body, 'user')).to.equal('1');
      expect((await post(subject, 429)).body.error.code).to.equal('user_rpm_exceeded');
    });
  });

  it('without a cache rpmLimit does nothing', async () => {
    const { makeCore, cache } = env();
    const core = makeCore({ cache: undefined });
    const subject = subjectOf(await fundedUser(core), { rpmLimit: 1, groupRpmOverride: 1 }, group(1));
    cache.reset();
    for (let i = 0; i < 4; i++) {
      const res = await post(subject, 200, core);
      expect(rpmRecord(res.body)).to.deep.equal({ check: 'rpm', outcome: 'skipped', reason: 'no_cache' });
    }
    expect(cache.total()).to.equal(0);
  });
});

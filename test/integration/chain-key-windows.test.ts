// Behaviour matrix, docs/behaviour.md#api-key-windows, docs/behaviour.md#windows-and-time: per-key 5 h / 1 d / 7 d spend windows, their anchoring, background resets and fail-open, on both backend pairs.
import { expect } from 'chai';
import request from 'supertest';
import type { BillingCore } from '../../lib/billing-core.js';
import type { BillingCache, BillingSubject, CacheBatchRequest } from '../../lib/types.js';
import { T0, describeChain } from '../helpers/chain-harness.js';
import { uniqueSuffix } from '../helpers/services.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const KEY = 'k-main';
/** Local midnights around T0 (Wed 2026-03-04 10:00 UTC). */
const MAR_4 = Date.UTC(2026, 2, 4);
const MAR_5 = Date.UTC(2026, 2, 5);
const MAR_11 = Date.UTC(2026, 2, 11);
const storeDown = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

type KeyLimits = Omit<NonNullable<BillingSubject['apiKey']>, 'id'>;
interface Check {
  check: string;
  outcome: string;
  reason?: string;
  source?: string;
  windows?: { window: string; limit: string | null; usage: string }[];
}

const keySubject = (userId: string, limits: KeyLimits): BillingSubject => ({ user: { id: userId }, apiKey: { id: KEY, ...limits } });
const keyRecord = (body: { decision: { checks: Check[] } }) => body.decision.checks.find((c) => c.check === 'apiKeyWindows');

/** The harness cache behind a proxy that also keeps every readBatch request, to see what was asked for. */
function recordingCache(cache: BillingCache): { cache: BillingCache; batches: CacheBatchRequest[] } {
  const batches: CacheBatchRequest[] = [];
  const proxy = new Proxy(cache, {
    get(obj, prop) {
      const value = Reflect.get(obj, prop) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (prop === 'readBatch' || prop === 'readBatchCounting') batches.push(args[0] as CacheBatchRequest);
        return (value as (...a: unknown[]) => unknown).apply(obj, args);
      };
    },
  });
  return { cache: proxy, batches };
}

describeChain('apiKeyWindows', (env) => {
  async function keyUser(limits: KeyLimits, core: BillingCore = env().core) {
    const userId = env().userId();
    await core.admin.topUp(userId, '1000');
    const subject = keySubject(userId, limits);
    return { userId, subject, app: env().app({ core, subject }) };
  }

  const spend = (core: BillingCore, subject: BillingSubject, costUsd: string) => core.settle({ requestId: `req-${uniqueSuffix()}`, subject, costUsd });

  it('a key whose limits are all 0 or absent: the check is skipped and no key data is read', async () => {
    const { store, cache, makeCore } = env();
    const recorded = recordingCache(cache.target);
    const core = makeCore({ cache: recorded.cache });
    for (const limits of [{}, { rateLimit5h: 0, rateLimit1d: '0', rateLimit7d: '0.00' }] as KeyLimits[]) {
      const { userId, subject, app } = await keyUser(limits, core);
      await spend(core, subject, '3'); // untracked: no key row is written
      store.reset();
      recorded.batches.length = 0;
      const res = await request(app.callback()).post('/').expect(200);
      expect(keyRecord(res.body)).to.deep.include({ outcome: 'skipped', reason: 'no_key_limits' });
      expect(store.count('getApiKeyWindows')).to.equal(0);
      expect(recorded.batches).to.have.length(1);
      expect(recorded.batches[0]?.apiKeyId).to.equal(undefined, 'the batched cache read does not ask for key windows');
      expect((await env().realStore.getApiKeyWindows(userId, KEY)).version).to.equal(0);
    }
  });

  it('a settled key is checked from the cache: usage per window, no store read', async () => {
    const { core, store } = env();
    const { subject, app } = await keyUser({ rateLimit5h: '2', rateLimit1d: '5', rateLimit7d: 0 });
    await spend(core, subject, '0.75');
    store.reset();
    const res = await request(app.callback()).post('/').expect(200);
    const rec = keyRecord(res.body);
    expect(rec).to.deep.include({ outcome: 'allowed', source: 'cache' });
    expect(rec?.windows?.map((w) => [w.window, w.limit, w.usage])).to.deep.equal([
      ['5h', '2.00000000', '0.75000000'],
      ['1d', '5.00000000', '0.75000000'],
      ['7d', null, '0.75000000'],
    ]);
    expect(store.count('getApiKeyWindows')).to.equal(0);
  });

  it('1e-8 below a limit passes, exactly at it rejects with 429 API_KEY_RATE_5H_EXCEEDED', async () => {
    const { core } = env();
    const { subject, app } = await keyUser({ rateLimit5h: '1.5' });
    await spend(core, subject, '1.49999999');
    await request(app.callback()).post('/').expect(200);
    await spend(core, subject, '0.00000001');
    const res = await request(app.callback()).post('/').expect(429);
    expect(res.body.error).to.deep.equal({ type: 'rate_limit_error', code: 'api_key_rate_5h_exceeded', message: 'API key 5-hour spending limit reached.' });
    expect(res.headers['retry-after']).to.equal(String(5 * 3600));
    // A wait beyond the 60 s the SDKs honour: they are told to stop rather than retry at once.
    expect(res.headers['x-should-retry']).to.equal('false');
  });

  it('5 h first, then 1 d, then 7 d, each with Retry-After to the end of its own window; 1 d and 7 d are anchored at the day of first use', async () => {
    const { core, clock, realStore } = env();
    const { userId, subject, app } = await keyUser({ rateLimit5h: '1', rateLimit1d: '1', rateLimit7d: '1' });
    await spend(core, subject, '1'); // first use at T0, 10:00 UTC
    const row = await realStore.getApiKeyWindows(userId, KEY);
    expect([row.start5hMs, row.start1dMs, row.start7dMs]).to.deep.equal([T0, MAR_4, MAR_4]);

    const expectDenial = async (code: string, retryAfterSec: number) => {
      const res = await request(app.callback()).post('/').expect(429);
      expect(res.body.error.code).to.equal(code);
      expect(res.headers['retry-after']).to.equal(String(retryAfterSec));
    };
    await expectDenial('api_key_rate_5h_exceeded', 5 * 3600);
    clock.set(T0 + 5 * HOUR - 1);
    await expectDenial('api_key_rate_5h_exceeded', 1);
    clock.set(T0 + 5 * HOUR); // 15:00: the 5 h window is over; the 1 d window ends at midnight, not 10:00 tomorrow
    await expectDenial('api_key_rate_1d_exceeded', 9 * 3600);
    clock.set(MAR_5 - 1);
    await expectDenial('api_key_rate_1d_exceeded', 1);
    clock.set(MAR_5); // 14 h after first use, the 1 d window is over
    await expectDenial('api_key_rate_7d_exceeded', (6 * DAY) / 1000);
    clock.set(MAR_11 - 1);
    await expectDenial('api_key_rate_7d_exceeded', 1);
    clock.set(MAR_11);
    const res = await request(app.callback()).post('/').expect(200);
    expect(keyRecord(res.body)?.windows?.map((w) => w.usage)).to.deep.equal(['0.00000000', '0.00000000', '0.00000000']);
  });

  it('the 5 h boundary: 1 ms before is still counted, exactly 5 h after the start has expired', async () => {
    const { core, clock } = env();
    const { subject, app } = await keyUser({ rateLimit5h: '1' });
    clock.set(T0 + 1234);
    await spend(core, subject, '1');
    clock.set(T0 + 1234 + 5 * HOUR - 1);
    await request(app.callback()).post('/').expect(429);
    clock.set(T0 + 1234 + 5 * HOUR);
    const res = await request(app.callback()).post('/').expect(200);
    expect(keyRecord(res.body)?.windows?.[0]).to.deep.include({ window: '5h', usage: '0.00000000' });
  });

  it('1 d and 7 d are anchored at the start of the day in the configured zone (Asia/Tokyo), in the store and the check alike', async () => {
    const { clock, makeCore, realStore } = env();
    const tokyo = makeCore({ timezone: 'Asia/Tokyo' });
    const { userId, subject, app } = await keyUser({ rateLimit1d: '1', rateLimit7d: '2' }, tokyo);
    await spend(tokyo, subject, '1'); // T0 is 19:00 on 2026-03-04 in Tokyo; its midnight is 2026-03-03 15:00 UTC
    const tokyoMidnight = Date.UTC(2026, 2, 3, 15);
    const row = await realStore.getApiKeyWindows(userId, KEY);
    expect([row.start1dMs, row.start7dMs]).to.deep.equal([tokyoMidnight, tokyoMidnight]);
    const res = await request(app.callback()).post('/').expect(429);
    expect(res.body.error.code).to.equal('api_key_rate_1d_exceeded');
    expect(res.headers['retry-after']).to.equal(String(5 * 3600));
    clock.set(tokyoMidnight + DAY);
    await request(app.callback()).post('/').expect(200);
  });

  it('never-started windows trigger no reset, however much time passes', async () => {
    const { store, clock } = env();
    const { app } = await keyUser({ rateLimit5h: '1', rateLimit1d: '1', rateLimit7d: '1' });
    store.reset();
    for (const at of [T0, T0 + 6 * HOUR, T0 + 2 * DAY, T0 + 9 * DAY]) {
      clock.set(at);
      const res = await request(app.callback()).post('/').expect(200);
      expect(keyRecord(res.body)).to.deep.include({ outcome: 'allowed' });
    }
    await env().core.close(); // background work would have finished by now
    expect(store.count('resetExpiredApiKeyWindows')).to.equal(0);
  });

  it('an expired, started window triggers one background reset: the store window is zeroed and the cache entry invalidated', async () => {
    const { core, store, cache, clock, realStore, makeCore } = env();
    const { userId, subject, app } = await keyUser({ rateLimit5h: '1', rateLimit1d: '5' });
    await spend(core, subject, '1');
    clock.set(T0 + 5 * HOUR);
    store.reset();
    const res = await request(app.callback()).post('/').expect(200);
    expect(keyRecord(res.body)?.windows?.[0]).to.deep.include({ window: '5h', usage: '0.00000000' });
    await core.close(); // waits for the detached reset
    expect(store.count('resetExpiredApiKeyWindows')).to.equal(1);
    const row = await realStore.getApiKeyWindows(userId, KEY);
    expect(row).to.deep.include({ usage5h: 0n, start5hMs: null, usage1d: 100_000_000n, start1dMs: MAR_4 }, 'only the expired window is reset');
    const cached = await cache.target.readBatch({ userId, apiKeyId: KEY });
    expect(cached.apiKeyWindows?.hit).to.equal(false, 'the reset invalidates the cache entry');

    // The reset row has nothing left to reset: later requests start no new reset.
    const again = makeCore();
    for (let i = 0; i < 3; i++)
      await request(env().app({ core: again, subject }).callback())
        .post('/')
        .expect(200);
    await again.close();
    expect(store.count('resetExpiredApiKeyWindows')).to.equal(1);
  });

  it('a burst of requests on an expired window starts exactly one reset', async () => {
    const { core, store, clock, realStore } = env();
    const { userId, subject, app } = await keyUser({ rateLimit5h: '1' });
    await spend(core, subject, '1');
    clock.set(T0 + 6 * HOUR);
    store.reset();
    await Promise.all(Array.from({ length: 6 }, () => request(app.callback()).post('/').expect(200)));
    await core.close();
    expect(store.count('resetExpiredApiKeyWindows')).to.equal(1);
    expect((await realStore.getApiKeyWindows(userId, KEY)).start5hMs).to.equal(null);
  });

  it("a request whose windows are answered in the same turn the reset's invalidation lands, however late, starts no second reset", async () => {
    const { core, store, cache, clock } = env();
    const { subject, app } = await keyUser({ rateLimit5h: '1' });
    await spend(core, subject, '1');
    clock.set(T0 + 6 * HOUR);
    let landInvalidation!: () => void;
    cache.holdUntil(new Promise<void>((resolve) => (landInvalidation = resolve)), ['invalidate']);
    const invalidated = cache.settled('invalidate');
    store.reset();
    await request(app.callback()).post('/').expect(200);
    // The next request reads the expired window now and gets its answer 50 microtasks after the
    // reset's invalidation lands: as a reply read from Redis in the same network read, behind it.
    cache.deliverAfter(
      invalidated.then(async () => {
        for (let i = 0; i < 50; i++) await null;
      }),
      ['readBatch'],
    );
    const readsBefore = cache.count('readBatch');
    const second = request(app.callback())
      .post('/')
      .then((res) => res.status);
    while (cache.count('readBatch') === readsBefore) await new Promise((resolve) => setTimeout(resolve, 1));
    landInvalidation();
    cache.holdUntil(null);
    expect(await second).to.equal(200);
    cache.deliverAfter(null);
    await core.close();
    expect(store.count('resetExpiredApiKeyWindows')).to.equal(1);
  });

  it('a cache error reads the store; a store error on a miss fails open (200, outcome failed_open) even over the limit', async () => {
    const { core, store, cache } = env();
    const { userId, subject, app } = await keyUser({ rateLimit1d: '1' });
    await spend(core, subject, '2');
    cache.failWith(new Error('connect ECONNREFUSED 127.0.0.1:6379'), ['readBatch']);
    store.reset();
    const viaStore = await request(app.callback()).post('/').expect(429);
    expect(viaStore.body.error.code).to.equal('api_key_rate_1d_exceeded');
    expect(store.count('getApiKeyWindows')).to.equal(1);
    cache.failWith(null);

    await core.invalidateApiKeyWindows(userId, KEY);
    store.failWith(storeDown(), ['getApiKeyWindows']);
    const open = await request(app.callback()).post('/').expect(200);
    store.failWith(null);
    expect(keyRecord(open.body)).to.deep.equal({ check: 'apiKeyWindows', outcome: 'failed_open', reason: 'error', source: 'none' });
    expect(JSON.stringify(open.body)).to.not.match(/ECONNREFUSED|5432/);
    expect(core.breakerState).to.equal('closed', 'key windows do not report to the breaker');
  });
});

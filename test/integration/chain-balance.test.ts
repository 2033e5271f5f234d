// Behaviour matrix, docs/behaviour.md#the-chain-in-order, docs/behaviour.md#balance, docs/behaviour.md#circuit-breaker: balance check and circuit breaker, on both backend pairs.
import { expect } from 'chai';
import request from 'supertest';
import { recordingLogger } from '../faults/fault-env.js';
import { balanceSubject, describeChain } from '../helpers/chain-harness.js';

const storeDown = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

describeChain('balanceCheck', (env) => {
  it('lets a positive balance through and reads it from the cache once warm', async () => {
    const { core, store, cache } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1.50');
    const app = env().app({ subject: balanceSubject(userId) });
    store.reset();
    cache.reset();
    const first = await request(app.callback()).post('/v1/chat').expect(200);
    expect(first.body.decision.checks.find((c: { check: string }) => c.check === 'balance')).to.include({ outcome: 'allowed' });
    expect(store.count('getBalance')).to.equal(0, 'admin writes put the row in the cache');
    await request(app.callback()).post('/v1/chat').expect(200);
    expect(store.total()).to.equal(0);
    expect(cache.count('readBatch')).to.equal(2);
  });

  it('rejects a balance of zero or below with 403 INSUFFICIENT_BALANCE and x-should-retry: false', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '0');
    const res = await request(
      env()
        .app({ subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(403);
    expect(res.body.error.code).to.equal('insufficient_balance');
    expect(res.body.error.type).to.equal('insufficient_quota');
    expect(res.headers['x-should-retry']).to.equal('false');
    expect(res.headers['retry-after']).to.equal(undefined);

    await core.admin.setBalance(userId, '-0.5');
    await request(
      env()
        .app({ subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(403);
  });

  it('applies the minimum reserve: below rejects, exactly at it passes', async () => {
    const { core, makeCore } = env();
    const userId = env().userId();
    const strict = makeCore({ minimumBalanceReserve: '0.50' });
    await core.admin.setBalance(userId, '0.49999999');
    await request(
      env()
        .app({ core: strict, subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(403);
    await core.admin.setBalance(userId, '0.5');
    await request(
      env()
        .app({ core: strict, subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(200);
    // The default reserve is 0.000001: one unit above zero is not enough.
    await core.admin.setBalance(userId, '0.00000099');
    await request(
      env()
        .app({ subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(403);
    await core.admin.setBalance(userId, '0.000001');
    await request(
      env()
        .app({ subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(200);
  });

  it('an unknown user is 403 BILLING_SUBJECT_NOT_FOUND and never opens the breaker', async () => {
    const { core } = env();
    const app = env().app({ subject: balanceSubject(env().userId('ghost')) });
    for (let i = 0; i < 8; i++) {
      const res = await request(app.callback()).post('/').expect(403);
      expect(res.body.error.code).to.equal('billing_subject_not_found');
    }
    expect(core.breakerState).to.equal('closed');
  });

  it('on a cache miss loads the store once for concurrent requests and fills the cache', async () => {
    const { core, store, cache, realStore } = env();
    const userId = env().userId();
    await realStore.setBalance(userId, 300_000_000n); // straight to the store: the cache has nothing
    await core.invalidateBalance(userId);
    store.reset();
    const app = env().app({ subject: balanceSubject(userId) });
    await Promise.all(Array.from({ length: 16 }, () => request(app.callback()).post('/').expect(200)));
    expect(store.count('getBalance')).to.equal(1);
    await core.close(); // drains the fill
    store.reset();
    cache.reset();
    const again = env().makeCore();
    await request(
      env()
        .app({ core: again, subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(200);
    expect(store.count('getBalance')).to.equal(0);
  });

  /** A user whose balance is in the store only, the cache's fills held until landFill(), the call counts reset. */
  async function missWithHeldFill() {
    const { core, store, cache, realStore } = env();
    const userId = env().userId();
    await realStore.setBalance(userId, 300_000_000n);
    await core.invalidateBalance(userId);
    let landFill!: () => void;
    cache.holdUntil(new Promise<void>((resolve) => (landFill = resolve)), ['fill']);
    store.reset();
    cache.reset();
    return { userId, store, cache, landFill, app: env().app({ subject: balanceSubject(userId) }) };
  }

  it('a request that misses while the fill is still on its way joins the finished load: one store read', async () => {
    const { userId, store, cache, landFill, app } = await missWithHeldFill();
    for (let i = 0; i < 4; i++) await request(app.callback()).post('/').expect(200);
    expect(cache.count('readBatch'), 'every request missed the cache').to.equal(4);
    expect(store.count('getBalance'), 'and one load served them all').to.equal(1);
    landFill();
    cache.holdUntil(null);
    for (let tries = 0; !(await cache.target.readBatch({ userId, balance: true })).balance?.hit; tries++) {
      if (tries === 200) throw new Error('the held fill never landed');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await request(app.callback()).post('/').expect(200);
    expect(store.count('getBalance'), 'the landed fill serves the next one').to.equal(1);
  });

  it('a request whose miss is answered in the same turn the fill lands, however late, joins the load: one store read', async () => {
    const { store, cache, landFill, app } = await missWithHeldFill();
    const fillLanded = cache.settled('fill');
    await request(app.callback()).post('/').expect(200);
    // The next request reads now — a miss, the fill is held — and gets its answer 50 microtasks after the
    // fill lands: as a reply read from Redis in the same network read as the fill's, behind it.
    cache.deliverAfter(
      fillLanded.then(async () => {
        for (let i = 0; i < 50; i++) await null;
      }),
      ['readBatch'],
    );
    const second = request(app.callback())
      .post('/')
      .then((res) => res.status);
    while (cache.count('readBatch') < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    landFill();
    cache.holdUntil(null);
    expect(await second).to.equal(200);
    cache.deliverAfter(null);
    expect(store.count('getBalance'), "the second request joined the first one's load").to.equal(1);
  });

  it('a balance write gives up a held load: the next request reads the new balance', async () => {
    const { core, cache, realStore } = env();
    const userId = env().userId();
    await realStore.setBalance(userId, 300_000_000n);
    await core.invalidateBalance(userId);
    let landFill!: () => void;
    cache.holdUntil(new Promise<void>((resolve) => (landFill = resolve)), ['fill']);
    const app = env().app({ subject: balanceSubject(userId) });
    await request(app.callback()).post('/').expect(200);
    await realStore.setBalance(userId, 0n);
    await core.invalidateBalance(userId);
    const res = await request(app.callback()).post('/').expect(403);
    expect(res.body.error.code).to.equal('insufficient_balance');
    landFill();
    cache.holdUntil(null);
  });

  it('a cache error falls back to the store', async () => {
    const { core, cache } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '2');
    cache.failWith(new Error("READONLY You can't write against a read only replica."));
    const res = await request(
      env()
        .app({ subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(200);
    expect(JSON.stringify(res.body)).to.not.include('READONLY');
    cache.failWith(null);
  });

  it('store down on a miss → 503 BILLING_SERVICE_ERROR without internal text', async () => {
    const { store } = env();
    const userId = env().userId();
    store.failWith(storeDown());
    const res = await request(
      env()
        .app({ subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(503);
    expect(res.body.error.type).to.equal('api_error');
    expect(res.body.error.message).to.equal('Billing service temporarily unavailable. Please retry later.');
    expect(JSON.stringify(res.body) + JSON.stringify(res.headers)).to.not.match(/ECONNREFUSED|5432/);
    store.failWith(null);
  });

  it('the breaker opens after 5 store failures, rejects without touching the store, half-opens after the reset timeout and closes on success', async () => {
    const { store, clock, makeCore } = env();
    const core = makeCore({ circuitBreaker: { failureThreshold: 5, resetTimeoutMs: 30_000, halfOpenRequests: 3 } });
    const userId = env().userId();
    await core.admin.topUp(userId, '5');
    await core.invalidateBalance(userId); // force store reads
    const app = env().app({ core, subject: balanceSubject(userId) });
    store.failWith(storeDown(), ['getBalance']);
    for (let i = 0; i < 5; i++) await request(app.callback()).post('/').expect(503);
    expect(core.breakerState).to.equal('open');
    store.reset();
    const rejected = await request(app.callback()).post('/').expect(503);
    expect(rejected.body.error.code).to.equal('billing_service_error');
    expect(store.count('getBalance')).to.equal(0, 'an open breaker rejects before the store');

    store.failWith(null);
    clock.advance(29_999);
    await request(app.callback()).post('/').expect(503);
    clock.advance(1);
    expect(core.breakerState).to.equal('half-open');
    await request(app.callback()).post('/').expect(200);
    expect(core.breakerState).to.equal('closed');
    await request(app.callback()).post('/').expect(200);
  });

  it('half-open: a failure re-opens at once, and requests beyond the probe budget are rejected', async () => {
    const { store, clock, makeCore } = env();
    const core = makeCore({ circuitBreaker: { failureThreshold: 2, resetTimeoutMs: 1000, halfOpenRequests: 2 } });
    const userId = env().userId();
    await core.admin.topUp(userId, '5');
    await core.invalidateBalance(userId);
    const app = env().app({ core, subject: balanceSubject(userId) });
    store.failWith(storeDown(), ['getBalance']);
    await request(app.callback()).post('/').expect(503);
    await request(app.callback()).post('/').expect(503);
    expect(core.breakerState).to.equal('open');
    clock.advance(1000);
    await request(app.callback()).post('/').expect(503); // probe fails
    expect(core.breakerState).to.equal('open');

    // Hold the probes so that the budget is spent while they are in flight.
    clock.advance(1000);
    store.failWith(null);
    let release: () => void = () => {};
    store.holdUntil(new Promise<void>((resolve) => (release = resolve)), ['getBalance']);
    const probes = [request(app.callback()).post('/'), request(app.callback()).post('/')].map((r) => r.then((res) => res.status));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const extra = await request(app.callback()).post('/');
    expect(extra.status).to.equal(503);
    release();
    store.holdUntil(null);
    expect(await Promise.all(probes)).to.deep.equal([200, 200]);
    expect(core.breakerState).to.equal('closed');
  });

  it('one failed store load shared by 10 waiting requests counts one breaker failure, a timed-out one too', async () => {
    const { store, makeCore } = env();
    const core = makeCore({ circuitBreaker: { failureThreshold: 2 }, loadTimeoutMs: 200 });
    const userId = env().userId();
    await core.admin.topUp(userId, '5');
    await core.invalidateBalance(userId);
    const app = env().app({ core, subject: balanceSubject(userId) });
    const concurrently = async () => {
      const statuses = await Promise.all(
        Array.from({ length: 10 }, () =>
          request(app.callback())
            .post('/')
            .then((res) => res.status),
        ),
      );
      expect(statuses).to.deep.equal(Array(10).fill(503));
    };

    let release: () => void = () => {};
    store.holdUntil(new Promise<void>((resolve) => (release = resolve)), ['getBalance']);
    store.failWith(storeDown(), ['getBalance']);
    const failing = concurrently();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(store.count('getBalance')).to.equal(1, 'the 10 requests share one load');
    release();
    await failing;
    expect(core.breakerState).to.equal('closed', 'one failed load is one failure, not ten');

    // A load that never answers: its timeout is the one failure; its late answer adds nothing.
    store.failWith(null);
    let answer: () => void = () => {};
    store.holdUntil(new Promise<void>((resolve) => (answer = resolve)), ['getBalance']);
    store.reset();
    await concurrently();
    expect(store.count('getBalance')).to.equal(1);
    expect(core.breakerState).to.equal('open', 'the timed-out load is the second failure');
    answer();
    store.holdUntil(null);
  });

  it('close() with the store down ends retries at its deadline, waking a retry in a long backoff, and logs the full settlement', async () => {
    const { store, makeCore } = env();
    const logger = recordingLogger();
    const core = makeCore({ closeTimeoutMs: 300, settlementRetryDelayMs: 20_000, logger });
    const userId = env().userId();
    await core.admin.topUp(userId, '5');
    store.failWith(storeDown(), ['settle']);
    const subject = { ...balanceSubject(userId), apiKey: { id: 'k1' }, platform: 'openai' };
    const settling = core.settle({ requestId: 'drain-1', subject, costUsd: '0.25', model: 'gpt-4o', inputTokens: 10, outputTokens: 20 });
    const outcome = settling.then(
      () => 'stored',
      (err: { code?: string }) => err.code,
    );
    // The first attempt has failed: the retry now waits out its 20 s backoff.
    while (store.count('settle') === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const startedAt = performance.now();
    await core.close();
    const closeMs = performance.now() - startedAt;
    store.failWith(null);
    expect(await outcome).to.equal('BILLING_SERVICE_ERROR');
    expect(closeMs).to.be.below(10_000, 'close() did not wait out the 20 s backoff');
    const [entry] = logger.entries.filter((e) => e.msg === 'billing settlement could not be stored before shutdown');
    expect(entry, 'the shutdown log entry').to.not.equal(undefined);
    expect((entry!.obj as { settlement?: object }).settlement).to.deep.include({
      requestId: 'drain-1',
      apiKeyId: 'k1',
      userId,
      mode: 'balance',
      costUsd: '0.25000000',
      platform: 'openai',
      charge: true,
      model: 'gpt-4o',
      inputTokens: 10,
      outputTokens: 20,
    });
    expect(await core.getBalance(userId)).to.equal('5.00000000', 'nothing was charged');
  });

  it('the breaker can be disabled', async () => {
    const { store, makeCore } = env();
    const core = makeCore({ circuitBreaker: { enabled: false, failureThreshold: 1 } });
    const userId = env().userId();
    store.failWith(storeDown(), ['getBalance']);
    for (let i = 0; i < 3; i++)
      await request(
        env()
          .app({ core, subject: balanceSubject(userId) })
          .callback(),
      )
        .post('/')
        .expect(503);
    store.failWith(null);
    await core.admin.topUp(userId, '1');
    await request(
      env()
        .app({ core, subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(200);
  });
});

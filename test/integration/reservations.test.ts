// Reservations (docs/holds.md) close the check-then-charge gap — overspend with and without estimates, lease
// release on settle, abort, disconnect and upstream errors, expiry of abandoned leases, and a soak.
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import request from 'supertest';
import { formatUsd } from '../../lib/money.js';
import type { BillingSubject } from '../../lib/types.js';
import { billingEligibility } from '../../middleware/index.js';
import { describeChain } from '../helpers/chain-harness.js';

/** A deterministic pseudo-random source for reproducible runs. */
function seeded(seed: number): () => number {
  return () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

/** $0.01 – $0.05 in whole cents, as a decimal string. */
function cost(random: () => number): string {
  return `0.0${1 + Math.floor(random() * 5)}`;
}

describeChain('reservations', (env) => {
  async function spend(withEstimates: boolean): Promise<{ charged: bigint; admitted: number; maxCost: bigint }> {
    const { core, realStore } = env();
    const userId = env().userId('spend');
    await core.admin.setBalance(userId, '1.00');
    const subject: BillingSubject = { user: { id: userId }, apiKey: { id: 'k1' }, platform: 'openai' };
    const random = seeded(withEstimates ? 11 : 12);
    const costs = Array.from({ length: 200 }, () => cost(random));
    // Every request is admitted before any settles, as when all are waiting on the upstream at once.
    const decisions = await Promise.all(costs.map((c) => core.check(subject, withEstimates ? { estimateUsd: c } : {})));
    const admitted = decisions.flatMap((d, i) => (d.allowed ? [{ d, i }] : []));
    await Promise.all(
      admitted.map(({ d, i }) =>
        core.settle({ requestId: `spend-${userId}-${i}`, subject, costUsd: costs[i]!, reservationId: d.allowed ? d.reservation?.id : undefined }),
      ),
    );
    const balance = (await realStore.getBalance(userId))!.balance;
    return { charged: 100_000_000n - balance, admitted: admitted.length, maxCost: 5_000_000n };
  }

  it('200 concurrent requests against $1.00: estimates keep the total within the balance; without them it overspends', async function () {
    this.timeout(60_000);
    const guarded = await spend(true);
    const unguarded = await spend(false);
    console.log(
      `      [${env().backend}] with estimates: ${guarded.admitted} admitted, charged $${formatUsd(guarded.charged)}; ` +
        `without: ${unguarded.admitted} admitted, charged $${formatUsd(unguarded.charged)}`,
    );
    expect(guarded.charged <= 100_000_000n + guarded.maxCost, 'charged ≤ $1.00 plus one request').to.equal(true);
    expect(guarded.admitted).to.be.greaterThan(0);
    expect(unguarded.charged > 100_000_000n + unguarded.maxCost, 'the unguarded run shows the overspend').to.equal(true);
  });

  it('a denied reservation names the limit that would be exceeded, and holds nothing', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '10');
    await core.admin.setPlatformQuota(userId, 'openai', { dailyLimitUsd: '1' });
    const subject: BillingSubject = { user: { id: userId }, apiKey: { id: 'k1', rateLimit5h: '5' }, platform: 'openai' };
    const held = await core.check(subject, { estimateUsd: '0.8' });
    expect(held.allowed).to.equal(true);
    const denied = await core.check(subject, { estimateUsd: '0.3' });
    expect(denied.allowed).to.equal(false);
    if (!denied.allowed) {
      expect(denied.error.code).to.equal('USER_PLATFORM_DAILY_QUOTA_EXHAUSTED');
      expect(denied.error.retryAfter).to.be.a('number');
    }
    expect(await core.listReservations(userId)).to.have.length(1);
    const keyLimited = await core.check({ ...subject, platform: null }, { estimateUsd: '4.5' });
    expect(keyLimited.allowed).to.equal(false);
    if (!keyLimited.allowed) expect(keyLimited.error.code).to.equal('API_KEY_RATE_5H_EXCEEDED');
  });

  it('a warm request with an estimate costs two cache round trips (RPM counted with the holds), and one RPM refuses holds nothing', async () => {
    const { core, cache, store } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '10');
    const subject: BillingSubject = { user: { id: userId, rpmLimit: 1 } };
    const first = await core.check(subject, { estimateUsd: '1' });
    expect(first.allowed).to.equal(true);
    cache.reset();
    store.reset();
    const second = await core.check(subject, { estimateUsd: '1' });
    expect(second.allowed).to.equal(false);
    if (!second.allowed) expect(second.error.code).to.equal('USER_RPM_EXCEEDED');
    expect([cache.count('readBatch'), cache.count('reserve'), cache.count('rpmHit')]).to.deep.equal([1, 1, 0]);
    expect(store.total()).to.equal(0);
    await core.close(); // releases run in the background
    expect((await env().makeCore().listReservations(userId)).length).to.equal(1, 'only the admitted request holds its lease');
  });

  describe('over HTTP', () => {
    function gatewayApp(onRequest: (ctx: Koa.Context) => Promise<void>): Koa {
      const app = new Koa();
      app.use(
        billingEligibility({
          core: env().core,
          subject: (ctx) => JSON.parse(ctx.get('x-subject')) as BillingSubject,
          estimateCost: (ctx) => ctx.get('x-estimate') || undefined,
        }),
      );
      app.use(onRequest);
      return app;
    }

    it('settlement replaces the lease with the actual cost', async () => {
      const { core } = env();
      const userId = env().userId();
      await core.admin.setBalance(userId, '1');
      const app = gatewayApp(async (ctx) => {
        expect(await core.listReservations(userId)).to.have.length(1);
        await ctx.state.billing!.settle({ requestId: `http-${userId}`, costUsd: '0.25' });
        ctx.body = { ok: true };
      });
      await request(app.callback())
        .post('/')
        .set('x-subject', JSON.stringify({ user: { id: userId } }))
        .set('x-estimate', '0.5')
        .expect(200);
      expect(await core.listReservations(userId)).to.deep.equal([]);
      expect(await core.getBalance(userId)).to.equal('0.75000000');
    });

    it('an upstream error (no settlement) releases the lease when the response ends', async () => {
      const { core } = env();
      const userId = env().userId();
      await core.admin.setBalance(userId, '1');
      const app = gatewayApp(async (ctx) => {
        ctx.status = 502;
        ctx.body = { error: 'upstream failed' };
      });
      await request(app.callback())
        .post('/')
        .set('x-subject', JSON.stringify({ user: { id: userId } }))
        .set('x-estimate', '0.9')
        .expect(502);
      await core.close();
      expect(await env().makeCore().listReservations(userId)).to.deep.equal([]);
    });

    it('a client that disconnects releases the lease at once', async () => {
      const { core } = env();
      const userId = env().userId();
      await core.admin.setBalance(userId, '1');
      let reached: () => void = () => {};
      const handlerReached = new Promise<void>((resolve) => (reached = resolve));
      const app = gatewayApp(async (ctx) => {
        reached();
        await new Promise((resolve) => ctx.req.once('close', resolve));
        ctx.body = 'too late';
      });
      const server = app.listen(0);
      const { port } = server.address() as AddressInfo;
      const req = http.request({ port, method: 'POST', headers: { 'x-subject': JSON.stringify({ user: { id: userId } }), 'x-estimate': '0.9' } });
      req.on('error', () => {});
      req.end();
      await handlerReached;
      expect(await core.listReservations(userId)).to.have.length(1);
      req.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      await core.close();
      server.close();
      expect(await env().makeCore().listReservations(userId)).to.deep.equal([]);
    });
  });

  describe('with the cache unable to hold (docs/holds.md)', () => {
    const cacheDown = () => Object.assign(new Error('Command timed out'), { name: 'TimeoutError' });
    const storeDown = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    afterEach(() => {
      env().cache.failWith(null);
      env().store.failWith(null);
    });

    it('holds in the store instead, counts that hold in the store and, once the cache is back, in the cache; settlement takes it back', async () => {
      const { core, cache, realStore } = env();
      const userId = env().userId();
      await core.admin.setBalance(userId, '0.05');
      const subject = { user: { id: userId } };
      cache.failWith(cacheDown(), ['reserve']);
      const first = await core.check(subject, { estimateUsd: '0.03' });
      expect(first.allowed && first.reservation?.id).to.match(/^store:/);
      expect(first.checks.find((c) => c.check === 'reservation')).to.include({ outcome: 'allowed', source: 'store' });
      expect(await realStore.getBalance(userId)).to.deep.include({ balance: 5_000_000n, held: 3_000_000n });
      const second = await core.check(subject, { estimateUsd: '0.03' });
      expect(second.allowed).to.equal(false, 'the store hold counts');
      expect(!second.allowed && second.error.code).to.equal('INSUFFICIENT_BALANCE');

      // The cache answers again; the store hold is still open and counts there too.
      cache.failWith(null);
      const meanwhile = await core.check(subject, { estimateUsd: '0.03' });
      expect(meanwhile.allowed).to.equal(false, 'the cache counts the store hold');
      const fits = await core.check(subject, { estimateUsd: '0.02' });
      expect(fits.allowed && fits.reservation?.id).to.not.match(/^store:/);
      if (fits.allowed) fits.reservation?.release();

      await core.settle({ requestId: `held-${userId}`, subject, costUsd: '0.01', reservationId: first.allowed ? first.reservation?.id : undefined });
      await core.close();
      expect(await realStore.getBalance(userId)).to.deep.equal({ version: (await realStore.getBalance(userId))!.version, balance: 4_000_000n });
      const after = await env().makeCore().check(subject, { estimateUsd: '0.04' });
      expect(after.allowed).to.equal(true, 'the hold was replaced by the cost');
      if (after.allowed) after.reservation?.release();
    });

    it('a request that ends without settlement releases its store hold', async () => {
      const { core, cache, realStore } = env();
      const userId = env().userId();
      await core.admin.setBalance(userId, '1');
      cache.failWith(cacheDown(), ['reserve']);
      const held = await core.check({ user: { id: userId } }, { estimateUsd: '0.5' });
      expect(await realStore.getBalance(userId)).to.deep.include({ held: 50_000_000n });
      if (held.allowed) held.reservation?.release();
      await core.close();
      expect(await realStore.getBalance(userId)).to.not.have.property('held');
    });

    it('answers 503 BILLING_SERVICE_ERROR when the store cannot hold it either, and holds nothing', async () => {
      const { core, cache, store, realStore } = env();
      const userId = env().userId();
      await core.admin.setBalance(userId, '1');
      cache.failWith(cacheDown(), ['reserve']);
      store.failWith(storeDown(), ['holdInStore']);
      const refused = await core.check({ user: { id: userId } }, { estimateUsd: '0.1' });
      expect(refused.allowed).to.equal(false);
      expect(!refused.allowed && refused.error.code).to.equal('BILLING_SERVICE_ERROR');
      expect(!refused.allowed && refused.error.status).to.equal(503);
      expect(await realStore.getBalance(userId)).to.not.have.property('held');
    });
  });

  it("a killed process's leases stop counting when their TTL ends", async function () {
    this.timeout(10_000);
    const { clock, backend, makeCore } = env();
    const ttlMs = backend === 'memory+sqlite' ? 60_000 : 400;
    const crashed = makeCore({ reservationTtlMs: ttlMs });
    const userId = env().userId();
    await crashed.admin.setBalance(userId, '1');
    const subject = { user: { id: userId } };
    expect((await crashed.check(subject, { estimateUsd: '1' })).allowed).to.equal(true);
    // The process dies here: nobody settles, releases or renews.
    await crashed.close();
    const survivor = makeCore({ reservationTtlMs: ttlMs });
    expect((await survivor.check(subject, { estimateUsd: '0.5' })).allowed).to.equal(false);
    if (backend === 'memory+sqlite') clock.advance(ttlMs);
    else await new Promise((resolve) => setTimeout(resolve, ttlMs + 100));
    expect(await survivor.listReservations(userId)).to.deep.equal([]);
    expect((await survivor.check(subject, { estimateUsd: '0.5' })).allowed).to.equal(true);
  });

  it('with 5,000 holds of one user open, 200 racing reservations get exactly what is left: never more held than available', async function () {
    this.timeout(120_000);
    const { core, realStore } = env();
    const userId = env().userId('busy');
    // 5,000 × $0.01 held, $1.00 left: room for exactly 100 of the 200 racing $0.01 reservations.
    await core.admin.setBalance(userId, '51');
    const subject: BillingSubject = { user: { id: userId }, apiKey: { id: 'k', rateLimit1d: '100000' }, platform: 'openai' };
    for (let opened = 0; opened < 5000; opened += 500) {
      const batch = await Promise.all(Array.from({ length: 500 }, () => core.check(subject, { estimateUsd: '0.01' })));
      expect(batch.every((d) => d.allowed)).to.equal(true);
    }
    const racing = await Promise.all(Array.from({ length: 200 }, () => core.check(subject, { estimateUsd: '0.01' })));
    expect(racing.filter((d) => d.allowed)).to.have.length(100);
    expect(racing.filter((d) => !d.allowed).every((d) => !d.allowed && d.error.code === 'INSUFFICIENT_BALANCE')).to.equal(true);
    const open = await core.listReservations(userId);
    expect(open).to.have.length(5100);
    expect(open.reduce((sum, r) => sum + BigInt(Math.round(Number(r.amountUsd) * 100)), 0n)).to.equal(5100n);
    expect((await realStore.getBalance(userId))!.balance).to.equal(5_100_000_000n);
  });

  it('a 10,000-request soak with random aborts leaves no lease behind and charges exactly the settled costs', async function () {
    this.timeout(180_000);
    const { core, realStore } = env();
    const random = seeded(99);
    const users = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const userId = env().userId(`soak${i}`);
        await core.admin.setBalance(userId, '1000');
        return userId;
      }),
    );
    const settled = new Map<string, bigint>();
    let aborted = 0;
    let next = 0;
    const started = Date.now();
    const worker = async () => {
      while (next < 10_000) {
        const n = next++;
        const userId = users[Math.floor(random() * users.length)]!;
        const subject: BillingSubject = { user: { id: userId }, apiKey: { id: 'k', rateLimit1d: '100000' }, platform: 'openai' };
        const c = cost(random);
        const decision = await core.check(subject, { estimateUsd: c });
        expect(decision.allowed).to.equal(true);
        if (!decision.allowed) continue;
        if (random() < 0.3) {
          aborted++;
          decision.reservation?.release();
        } else {
          await core.settle({ requestId: `soak-${n}`, subject, costUsd: c, reservationId: decision.reservation?.id });
          settled.set(userId, (settled.get(userId) ?? 0n) + BigInt(Math.round(Number(c) * 100)) * 1_000_000n);
        }
      }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    await core.close();
    const seconds = (Date.now() - started) / 1000;
    console.log(`      [${env().backend}] 10000 requests (${aborted} aborted) in ${seconds.toFixed(1)} s (${Math.round(10_000 / seconds)}/s)`);
    const after = env().makeCore();
    for (const userId of users) {
      expect(await after.listReservations(userId), userId).to.deep.equal([]);
      expect((await realStore.getBalance(userId))!.balance).to.equal(100_000_000_000n - (settled.get(userId) ?? 0n));
    }
  });
});

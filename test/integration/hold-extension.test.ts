// Growing a hold (docs/stream-metering.md) on both backend pairs: all or nothing against every limit
// the request was reserved on, refused with the limit's own code while the hold keeps what it had,
// settled as a whole, never growing a hold that ended, and never throwing for a cache failure.
import { expect } from 'chai';
import request from 'supertest';
import { Registry } from 'prom-client';
import type { BillingCore } from '../../lib/billing-core.js';
import { BillingMetrics } from '../../lib/metrics.js';
import { formatUsd, MAX_USD_UNITS, MoneyError } from '../../lib/money.js';
import type { BillingSubject } from '../../lib/types.js';
import { billingEligibility } from '../../middleware/index.js';
import { describeChain } from '../helpers/chain-harness.js';

/** Polls until `check` returns a value (the cache fill after a store read is asynchronous). */
async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describeChain('hold extension', (env) => {
  async function held(core: BillingCore, subject: BillingSubject, estimateUsd: string) {
    const decision = await core.check(subject, { estimateUsd });
    if (!decision.allowed || !decision.reservation) throw new Error(`expected a reservation, got ${JSON.stringify(decision)}`);
    return decision.reservation;
  }
  const reservedUsd = async (core: BillingCore, userId: string) => (await core.listReservations(userId)).map((r) => r.amountUsd);

  it('grows against the balance until it has no room, then is refused with the balance denial and keeps what it had', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '1');
    const subject: BillingSubject = { user: { id: userId } };
    const hold = await held(core, subject, '0.25');
    const { cache, store } = env();
    cache.reset();
    store.reset();
    expect(await hold.extend('0.5')).to.deep.equal({ extended: true, heldUsd: '0.75000000' });
    // One cache call (the reserve script, replacing the lease) and no store query per extension.
    expect([cache.total(), cache.count('reserve'), store.total()]).to.deep.equal([1, 1, 0]);
    expect(await hold.extend('0.3')).to.deep.equal({ extended: false, reason: 'refused', code: 'INSUFFICIENT_BALANCE', dimension: 'bal' });
    expect(await reservedUsd(core, userId)).to.deep.equal(['0.75000000']);
    expect(await hold.extend('0.25')).to.deep.equal({ extended: true, heldUsd: '1.00000000' });
    // Another request of the user now finds nothing left.
    const other = await core.check(subject, { estimateUsd: '0.01' });
    expect(other.allowed).to.equal(false);
    // Settlement replaces the whole hold by the actual cost; after it there is nothing to grow.
    const receipt = await core.settle({ requestId: `r-${userId}`, subject, costUsd: '0.9', reservationId: hold.id });
    expect(receipt.costUsd).to.equal('0.90000000');
    expect(await reservedUsd(core, userId)).to.deep.equal([]);
    expect(await hold.extend('0.01')).to.deep.equal({ extended: false, reason: 'unavailable', detail: 'ended' });
  });

  it('is refused by whichever limit has no room, with that limit’s code: subscription day, platform quota, key window', async () => {
    const { core } = env();
    const sub = env().userId('sub');
    await core.admin.upsertSubscription({ userId: sub, groupId: 'g-pro', expiresAt: Date.now() + 30 * 86_400_000 });
    const subscriber: BillingSubject = {
      user: { id: sub },
      group: { id: 'g-pro', billingType: 'subscription', dailyLimitUsd: '1' },
      subscription: { id: `s-${sub}` },
    };
    const subHold = await held(core, subscriber, '0.6');
    expect(await subHold.extend('0.5')).to.deep.include({ extended: false, code: 'DAILY_LIMIT_EXCEEDED' });

    const user = env().userId('quota');
    await core.admin.setBalance(user, '100');
    await core.admin.setPlatformQuota(user, 'openai', { dailyLimitUsd: '1' });
    const quotaHold = await held(core, { user: { id: user }, platform: 'openai' }, '0.9');
    expect(await quotaHold.extend('0.2')).to.deep.include({ extended: false, code: 'USER_PLATFORM_DAILY_QUOTA_EXHAUSTED' });

    const keyed = env().userId('key');
    await core.admin.setBalance(keyed, '100');
    const keyHold = await held(core, { user: { id: keyed }, apiKey: { id: 'k1', rateLimit5h: '2' } }, '1.5');
    expect(await keyHold.extend('0.4')).to.deep.equal({ extended: true, heldUsd: '1.90000000' });
    expect(await keyHold.extend('0.2')).to.deep.include({ extended: false, code: 'API_KEY_RATE_5H_EXCEEDED', dimension: 'key:k1:5h' });
    expect(await reservedUsd(core, keyed)).to.deep.equal(['1.90000000']);
  });

  it('has nothing to grow without a hold, after a release, with its row out of the cache, or when the cache fails; a bad amount rejects naming amountUsd', async () => {
    const { core, cache } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '5');
    const subject: BillingSubject = { user: { id: userId } };
    const hold = await held(core, subject, '1');
    // The largest amount alone is fine as money, but not on top of the dollar already held.
    for (const bad of ['0', '-1', 'NaN', '1e400', 10n as unknown as string, formatUsd(MAX_USD_UNITS)]) {
      const error = await hold.extend(bad).catch((err: unknown) => err);
      expect(error, String(bad)).to.be.instanceOf(MoneyError);
      expect((error as MoneyError).field).to.equal('amountUsd');
    }
    cache.failWith(new Error('connect ECONNREFUSED 127.0.0.1:6379'), ['reserve']);
    expect(await hold.extend('1')).to.deep.equal({ extended: false, reason: 'unavailable', detail: 'cache_error' });
    cache.failWith(null);
    expect(await reservedUsd(core, userId)).to.deep.equal(['1.00000000'], 'a failed extension keeps the hold');
    // The balance dropped from the cache (an invalidation): the hold cannot be checked against it, so it does not grow.
    await core.invalidateBalance(userId);
    expect(await hold.extend('1')).to.deep.equal({ extended: false, reason: 'unavailable', detail: 'stale' });
    await core.check(subject); // the next check reads the store and fills the cache again
    await waitFor(async () => ((await hold.extend('0.5')).extended ? true : undefined));
    expect(await reservedUsd(core, userId)).to.deep.equal(['1.50000000']);
    hold.release();
    await core.close(); // releases run in the background
    const fresh = env().makeCore();
    expect(await reservedUsd(fresh, userId)).to.deep.equal([]);
    expect(await hold.extend('1')).to.deep.equal({ extended: false, reason: 'unavailable', detail: 'ended' });
  });

  it('check() then settle({ reservationId }) hands the hold over: the open-reservations gauge comes back to 0 (regression: it stayed up)', async () => {
    const registry = new Registry();
    const core = env().makeCore({ metrics: new BillingMetrics({ registry }) });
    const userId = env().userId();
    await core.admin.setBalance(userId, '1');
    const subject: BillingSubject = { user: { id: userId } };
    const gauge = async () => (await registry.getSingleMetric('billing_open_reservations')!.get()).values[0]?.value;
    const hold = await held(core, subject, '0.5');
    expect(await gauge()).to.equal(1);
    await core.settle({ requestId: `g-${userId}`, subject, costUsd: '0.1', reservationId: hold.id });
    expect(await gauge()).to.equal(0);
    expect(await hold.extend('0.1')).to.deep.equal({ extended: false, reason: 'unavailable', detail: 'ended' });
  });

  it('over HTTP: ctx.state.billing.extendHold grows the request’s hold, settle() replaces it, and the metric counts each outcome', async () => {
    const registry = new Registry();
    const core = env().makeCore({ metrics: new BillingMetrics({ registry }) });
    const userId = env().userId();
    await core.admin.setBalance(userId, '1');
    const seen: unknown[] = [];
    const app = env().app({
      core,
      middleware: [
        billingEligibility({ core, subject: () => ({ user: { id: userId } }), estimateCost: () => '0.2' }),
        async (ctx, next) => {
          seen.push(await ctx.state.billing!.extendHold('0.5'));
          seen.push(await ctx.state.billing!.extendHold('0.5'));
          await ctx.state.billing!.settle({ requestId: `http-${userId}`, costUsd: '0.6' });
          await next();
        },
      ],
    });
    await request(app.callback()).post('/').expect(200);
    expect(seen).to.deep.equal([
      { extended: true, heldUsd: '0.70000000' },
      { extended: false, reason: 'refused', code: 'INSUFFICIENT_BALANCE', dimension: 'bal' },
    ]);
    expect(await core.getBalance(userId)).to.equal('0.40000000');
    expect(await core.listReservations(userId)).to.deep.equal([]);
    const metric = await registry.getSingleMetric('billing_hold_extensions_total')!.get();
    const count = (result: string) => metric.values.find((v) => v.labels.result === result)?.value;
    expect([count('extended'), count('refused')]).to.deep.equal([1, 1]);
  });
});

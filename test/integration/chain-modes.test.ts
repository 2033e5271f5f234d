// Behaviour matrix, docs/behaviour.md#the-chain-in-order, docs/behaviour.md#errors-and-responses: run modes, billing modes, per-route mounting, formats, subjects, settle from the context.
import { expect } from 'chai';
import Router from '@koa/router';
import Koa from 'koa';
import request from 'supertest';
import { BillingError } from '../../lib/errors.js';
import type { BillingSubject } from '../../lib/types.js';
import { balanceCheck, billingContext, billingEligibility, breakerGuard, rpmLimit, type SubjectResolver } from '../../middleware/index.js';
import { balanceSubject, describeChain } from '../helpers/chain-harness.js';

describeChain('billing chain modes and rendering', (env) => {
  it("runMode 'simple' runs no check, and settlement logs usage but charges nothing", async () => {
    const { makeCore, store, realStore } = env();
    const core = makeCore({ runMode: 'simple' });
    const userId = env().userId();
    store.reset();
    const res = await request(
      env()
        .app({ core, subject: balanceSubject(userId, { user: { id: userId, rpmLimit: 1 } }) })
        .callback(),
    )
      .post('/')
      .expect(200);
    expect(res.body.decision.checks).to.deep.equal([]);
    expect(store.total()).to.equal(0);
    await core.admin.setBalance(userId, '1');
    const receipt = await core.settle({ requestId: `simple-${userId}`, subject: balanceSubject(userId), costUsd: '0.4' });
    expect(receipt).to.include({ charged: false, duplicate: false, costUsd: '0.40000000' });
    expect(await core.getBalance(userId)).to.equal('1.00000000');
    const log = await realStore.listUsage(userId, 10);
    expect(log).to.have.length(1);
  });

  it('a subscription-type group without a subscription object is billed in balance mode', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '0');
    const subject: BillingSubject = { user: { id: userId }, group: { id: 'g1', billingType: 'subscription', dailyLimitUsd: '1' } };
    const res = await request(env().app({ subject }).callback()).post('/').expect(403);
    expect(res.body.error.code).to.equal('insufficient_balance');
    await core.admin.topUp(userId, '3');
    await core.settle({ requestId: `bal-${userId}`, subject, costUsd: '1' });
    expect(await core.getBalance(userId)).to.equal('2.00000000');
  });

  it('a route without the chain is never limited or charged', async () => {
    const { core, store } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '0');
    const router = new Router();
    const subject = balanceSubject(userId, { user: { id: userId, rpmLimit: 1 } });
    router.get('/v1/models', (ctx) => {
      ctx.body = { data: [] };
    });
    router.post('/v1/chat', billingEligibility({ core, subject: () => subject }), (ctx) => {
      ctx.body = { ok: true };
    });
    const app = new Koa().use(router.routes());
    store.reset();
    for (let i = 0; i < 5; i++) await request(app.callback()).get('/v1/models').expect(200);
    expect(store.total()).to.equal(0);
    await request(app.callback()).post('/v1/chat').expect(403);
    expect(await core.getBalance(userId)).to.equal('0.00000000');
  });

  it('single checks can be mounted by hand per route, and denials render in the chosen format', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '0');
    const app = env().app({
      middleware: [billingContext({ core, subject: () => balanceSubject(userId), format: 'anthropic' }), breakerGuard(), balanceCheck(), rpmLimit()],
    });
    const res = await request(app.callback()).post('/v1/messages').expect(403);
    expect(res.body).to.deep.equal({ type: 'error', error: { type: 'permission_error', message: res.body.error.message } });
    expect(res.body.error.message).to.be.a('string').and.not.equal('');
    expect(res.headers['x-should-retry']).to.equal('false');
  });

  it('a check mounted without billingContext fails loudly, naming what is missing', async () => {
    const app = new Koa();
    let message = '';
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (err) {
        message = (err as Error).message;
        ctx.status = 500;
      }
    });
    app.use(balanceCheck());
    await request(app.callback()).post('/').expect(500);
    expect(message).to.match(/balanceCheck\(\) needs billingContext/);
  });

  it('a custom render function receives the BillingError', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '0');
    const app = env().app({
      middleware: [
        billingEligibility({
          core,
          subject: () => balanceSubject(userId),
          format: (error, ctx) => {
            ctx.status = error.status;
            ctx.body = { custom: error.code };
          },
        }),
      ],
    });
    const res = await request(app.callback()).post('/').expect(403);
    expect(res.body).to.deep.equal({ custom: 'INSUFFICIENT_BALANCE' });
  });

  it('a malformed subject is a clear 400 naming the field, with no internal text; a missing one too', async () => {
    const { core } = env();
    const bad = await request(
      env()
        .app({ subject: { user: { id: 'a b{c}' } } })
        .callback(),
    )
      .post('/')
      .expect(400);
    expect(bad.body.error.message).to.include('subject.user.id');
    expect(JSON.stringify(bad.body)).to.not.include('a b{c}');
    const badLimit = await request(
      env()
        .app({ subject: { user: { id: 'x' }, apiKey: { id: 'k', rateLimit5h: 'lots' } } })
        .callback(),
    )
      .post('/')
      .expect(400);
    expect(badLimit.body.error.message).to.include('rateLimit5h');
    const app = new Koa().use(billingEligibility({ core, subject: () => undefined })).use((ctx) => {
      ctx.body = 'reached';
    });
    const missing = await request(app.callback()).post('/').expect(400);
    expect(missing.body.error.code).to.equal('invalid_subject');
  });

  it('a subject resolver that throws renders 503 without its message', async () => {
    const { core } = env();
    const app = new Koa().use(
      billingEligibility({
        core,
        subject: () => {
          throw new Error('SELECT * FROM secrets failed');
        },
      }),
    );
    const res = await request(app.callback()).post('/').expect(503);
    expect(JSON.stringify(res.body)).to.not.include('secrets');
  });

  it('takes the subject from a resolver that answers at once, from a promise, and from any thenable; a rejected one renders 503', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1');
    const subject = balanceSubject(userId);
    const resolvers: SubjectResolver[] = [
      () => subject,
      async () => subject,
      // biome-ignore lint/suspicious/noThenProperty: a resolver may return any thenable, not only a Promise
      () => ({ then: (resolve: (value: BillingSubject) => void) => resolve(subject) }) as unknown as Promise<BillingSubject>,
    ];
    for (const resolver of resolvers) {
      const app = new Koa().use(billingEligibility({ core, subject: resolver })).use((ctx) => {
        ctx.body = ctx.state.billing?.mode;
      });
      const res = await request(app.callback()).post('/').expect(200);
      expect(res.text).to.equal('balance');
    }
    const rejecting = new Koa().use(billingEligibility({ core, subject: () => Promise.reject(new Error('key lookup failed')) }));
    const res = await request(rejecting.callback()).post('/').expect(503);
    expect(JSON.stringify(res.body)).to.not.include('key lookup');
  });

  it('errors thrown by the handler after the chain pass through untouched', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1');
    const app = new Koa();
    let caught: unknown;
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (err) {
        caught = err;
        ctx.status = 418;
      }
    });
    app.use(billingEligibility({ core, subject: () => balanceSubject(userId) }));
    app.use(() => {
      throw new BillingError('INSUFFICIENT_BALANCE');
    });
    await request(app.callback()).post('/').expect(418);
    expect(caught).to.be.instanceOf(BillingError);
  });

  it('ctx.state.billing exposes mode, decision and settle, and settlement is idempotent by request id', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1');
    const subject = balanceSubject(userId, { apiKey: { id: 'key1' }, platform: 'openai' });
    const app = new Koa();
    app.use(billingEligibility({ core, subject: () => subject }));
    app.use(async (ctx) => {
      const billing = ctx.state.billing!;
      const receipt = await billing.settle({ requestId: ctx.get('x-request-id'), costUsd: ctx.get('x-cost') });
      ctx.body = { mode: billing.mode, checks: billing.decision.checks.map((c) => `${c.check}:${c.outcome}`), receipt };
    });
    const first = await request(app.callback()).post('/').set('x-request-id', `req-${userId}`).set('x-cost', '0.25').expect(200);
    expect(first.body.mode).to.equal('balance');
    expect(first.body.checks).to.deep.equal([
      'breaker:allowed',
      'balance:allowed',
      'subscription:skipped',
      'platformQuota:allowed',
      'apiKeyWindows:skipped',
      'rpm:skipped',
    ]);
    expect(first.body.receipt).to.include({ duplicate: false, costUsd: '0.25000000' });
    const repeat = await request(app.callback()).post('/').set('x-request-id', `req-${userId}`).set('x-cost', '0.25').expect(200);
    expect(repeat.body.receipt.duplicate).to.equal(true);
    expect(await core.getBalance(userId)).to.equal('0.75000000');
    await request(app.callback()).post('/').set('x-request-id', `req-${userId}`).set('x-cost', '0.30').expect(409);
    expect(await core.getBalance(userId)).to.equal('0.75000000');
  });

  it('settle rejects NaN, negative and non-numeric costs before touching the store', async () => {
    const { core, store } = env();
    const userId = env().userId();
    await core.admin.topUp(userId, '1');
    store.reset();
    for (const costUsd of [Number.NaN, -1, 'abc', Infinity, '1e400']) {
      let error: unknown;
      try {
        await core.settle({ requestId: `bad-${userId}`, subject: balanceSubject(userId), costUsd });
      } catch (err) {
        error = err;
      }
      expect(error, String(costUsd)).to.be.instanceOf(Error);
      expect((error as Error).message).to.match(/costUsd/);
    }
    expect(store.count('settle')).to.equal(0);
  });

  it('the crossing settlement may overdraw; the next request is then rejected', async () => {
    const { core } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '0.10');
    const subject = balanceSubject(userId);
    await request(env().app({ subject }).callback()).post('/').expect(200);
    await core.settle({ requestId: `over-${userId}`, subject, costUsd: '0.25' });
    expect(await core.getBalance(userId)).to.equal('-0.15000000');
    await request(env().app({ subject }).callback()).post('/').expect(403);
  });
});

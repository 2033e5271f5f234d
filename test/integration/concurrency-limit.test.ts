// Concurrency slots over HTTP: 100 concurrent requests against a cap of 10 never have more than 10 in
// flight (and do reach 10), the rest get 429 CONCURRENCY_LIMIT_EXCEEDED in the route's format, and every
// slot is free afterwards — after normal ends, client disconnects and handler errors alike.
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import type { BillingCore } from '../../lib/billing-core.js';
import type { CheckName } from '../../lib/decisions.js';
import type { BillingSubject } from '../../lib/types.js';
import { billingEligibility } from '../../middleware/index.js';
import { describeChain } from '../helpers/chain-harness.js';

interface Reply {
  status: number;
  body: string;
  retryAfter: string | undefined;
}

describeChain('concurrency slots', (env) => {
  let server: http.Server | undefined;

  afterEach(async () => {
    if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
  });

  /** Serves the chain for `subject`, then `handler`; resolves to the port. */
  async function serve(
    core: BillingCore,
    subject: BillingSubject,
    handler: Koa.Middleware,
    options: { format?: 'openai' | 'anthropic'; shadow?: CheckName[] } = {},
  ): Promise<number> {
    const app = new Koa();
    app.silent = true;
    app.use(billingEligibility({ core, subject: () => subject, format: options.format, shadow: options.shadow }));
    app.use(handler);
    server = http.createServer(app.callback());
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  function get(port: number): Promise<Reply> {
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body, retryAfter: res.headers['retry-after'] as string | undefined }));
        })
        .on('error', reject);
    });
  }

  /** A handler that counts requests in flight and holds them until `release()`. */
  function gate() {
    let inFlight = 0;
    let max = 0;
    let open: () => void = () => {};
    const opened = new Promise<void>((resolve) => (open = resolve));
    const handler: Koa.Middleware = async (ctx) => {
      inFlight++;
      max = Math.max(max, inFlight);
      try {
        await opened;
        ctx.body = { ok: true };
      } finally {
        inFlight--;
      }
    };
    return {
      handler,
      release: () => open(),
      get max() {
        return max;
      },
      get inFlight() {
        return inFlight;
      },
    };
  }

  async function slotsFree(core: BillingCore, userId: string): Promise<void> {
    // Releases run in the background once each response has closed.
    for (let i = 0; i < 50 && (await core.listReservations(userId)).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await core.listReservations(userId)).to.deep.equal([]);
  }

  it('100 concurrent requests against a cap of 10: exactly 10 in flight at most and at once, 90 refused with 429, every slot freed', async function () {
    this.timeout(30_000);
    const { core } = env();
    const userId = env().userId('cc');
    await core.admin.setBalance(userId, '10');
    let g = gate();
    const port = await serve(core, { user: { id: userId, maxConcurrency: 10 } }, (ctx, next) => g.handler(ctx, next));
    const replies: Reply[] = [];
    let refused = 0;
    const all = Array.from({ length: 100 }, () =>
      get(port).then((reply) => {
        replies.push(reply);
        if (reply.status === 429 && ++refused === 90) g.release();
        return reply;
      }),
    );
    await Promise.all(all);
    expect(g.max).to.equal(10);
    expect(replies.filter((r) => r.status === 200)).to.have.length(10);
    const denials = replies.filter((r) => r.status === 429);
    expect(denials).to.have.length(90);
    for (const denial of denials) {
      expect(JSON.parse(denial.body)).to.deep.include({
        error: { type: 'rate_limit_error', code: 'concurrency_limit_exceeded', message: 'Too many requests in flight at once. Retry when one has finished.' },
      });
      expect(denial.retryAfter).to.equal('1');
    }
    await slotsFree(core, userId);
    // Free again: the next ten are all admitted.
    g = gate();
    const again = Array.from({ length: 10 }, () => get(port));
    while (g.inFlight < 10) await new Promise((resolve) => setTimeout(resolve, 10));
    g.release();
    expect((await Promise.all(again)).every((r) => r.status === 200)).to.equal(true);
  });

  it('a key cap applies to the key alone, and its refusal says so; the Anthropic format renders it too', async function () {
    const { core } = env();
    const userId = env().userId('cck');
    await core.admin.setBalance(userId, '10');
    const g = gate();
    const port = await serve(core, { user: { id: userId, maxConcurrency: 50 }, apiKey: { id: 'k1', maxConcurrency: 3 } }, g.handler, { format: 'anthropic' });
    const pending = Array.from({ length: 3 }, () => get(port));
    while (g.inFlight < 3) await new Promise((resolve) => setTimeout(resolve, 10));
    const refused = await get(port);
    expect(refused.status).to.equal(429);
    expect(JSON.parse(refused.body)).to.deep.equal({
      type: 'error',
      error: { type: 'rate_limit_error', message: 'Too many requests in flight at once. Retry when one has finished.' },
    });
    const decision = await core.check({ user: { id: userId, maxConcurrency: 50 }, apiKey: { id: 'k1', maxConcurrency: 3 } });
    expect(decision.allowed).to.equal(false);
    if (!decision.allowed) {
      expect(decision.error.metadata).to.deep.equal({ scope: 'apiKey', limit: 3 });
      expect(decision.checks.at(-1)).to.deep.include({ check: 'concurrency', outcome: 'denied', code: 'CONCURRENCY_LIMIT_EXCEEDED', reason: 'apiKey' });
    }
    g.release();
    await Promise.all(pending);
    await slotsFree(core, userId);
  });

  it('slots are freed when clients disconnect mid-request and when the handler fails', async function () {
    this.timeout(30_000);
    const { core } = env();
    const userId = env().userId('ccd');
    await core.admin.setBalance(userId, '10');
    let inFlight = 0;
    let mode: 'hang' | 'fail' = 'hang';
    const port = await serve(core, { user: { id: userId, maxConcurrency: 5 } }, async (ctx) => {
      inFlight++;
      try {
        if (mode === 'fail') throw new Error('upstream exploded');
        // Until the client goes away.
        await new Promise<void>((resolve) => ctx.res.once('close', () => resolve()));
      } finally {
        inFlight--;
      }
    });
    const requests = Array.from({ length: 5 }, () => http.get({ host: '127.0.0.1', port, path: '/', agent: false }).on('error', () => {}));
    while (inFlight < 5) await new Promise((resolve) => setTimeout(resolve, 10));
    expect((await get(port)).status).to.equal(429);
    for (const req of requests) req.destroy();
    await slotsFree(core, userId);
    mode = 'fail';
    const failed = await Promise.all(Array.from({ length: 5 }, () => get(port)));
    expect(failed.map((r) => r.status)).to.deep.equal([500, 500, 500, 500, 500]);
    await slotsFree(core, userId);
  });

  it('in shadow mode the cap never refuses, and the decision records shadow_deny with the slots in use', async function () {
    const { core } = env();
    const userId = env().userId('ccs');
    await core.admin.setBalance(userId, '10');
    const subject: BillingSubject = { user: { id: userId, maxConcurrency: 1 } };
    const first = await core.check(subject, { shadow: ['concurrency'] });
    const second = await core.check(subject, { shadow: ['concurrency'] });
    expect([first.allowed, second.allowed]).to.deep.equal([true, true]);
    expect(first.checks.find((c) => c.check === 'concurrency')).to.deep.include({
      outcome: 'allowed',
      windows: [{ window: 'user', limit: '1', usage: '1', resetsAtMs: null }],
    });
    expect(second.checks.find((c) => c.check === 'concurrency')).to.deep.include({
      outcome: 'shadow_deny',
      windows: [{ window: 'user', limit: '1', usage: '2', resetsAtMs: null }],
    });
    if (first.allowed) first.reservation?.release();
    if (second.allowed) second.reservation?.release();
    await slotsFree(core, userId);
  });

  it('a refused request consumes no RPM and holds nothing', async function () {
    const { core } = env();
    const userId = env().userId('ccr');
    await core.admin.setBalance(userId, '10');
    const subject: BillingSubject = { user: { id: userId, maxConcurrency: 1, rpmLimit: 2 } };
    const held = await core.check(subject, { estimateUsd: '1' });
    expect(held.allowed).to.equal(true);
    for (let i = 0; i < 3; i++) {
      const refused = await core.check(subject, { estimateUsd: '1' });
      expect(!refused.allowed && refused.error.code).to.equal('CONCURRENCY_LIMIT_EXCEEDED');
    }
    expect(await core.listReservations(userId)).to.have.length(1);
    if (held.allowed) held.reservation?.release();
    await slotsFree(core, userId);
    // Only the first request counted: one more fits under the cap of 2 per minute.
    const counted = await core.check(subject, { estimateUsd: '1' });
    expect(counted.allowed).to.equal(true);
    if (counted.allowed) counted.reservation?.release();
    const third = await core.check(subject, { estimateUsd: '1' });
    expect(!third.allowed && third.error.code).to.equal('USER_RPM_EXCEEDED');
  });
});

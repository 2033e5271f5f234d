// PostgreSQL cut or black-holed: warm-cache checks keep passing, misses answer 503 and open the
// breaker, which half-opens and closes again; settlements made meanwhile land exactly once (docs/behaviour.md#balance, docs/behaviour.md#settlement, docs/behaviour.md#circuit-breaker).
import { expect } from 'chai';
import request from 'supertest';
import Koa from 'koa';
import { ManualClock } from '../../lib/clock.js';
import type { BillingCore } from '../../lib/billing-core.js';
import { formatUsd } from '../../lib/money.js';
import { TABLES } from '../../lib/store/tables.js';
import type { BillingStore } from '../../lib/types.js';
import { billingEligibility } from '../../middleware/index.js';
import { instrument } from '../helpers/instrumented.js';
import { createFaultEnv, PG_TIMEOUTS, recordingLogger, report, sleep, waitFor, type FaultEnv } from './fault-env.js';
import { INITIAL_BALANCE_UNITS, PLATFORM, expectCacheEqualsStore, makeUsers, seedUsers, subjectOf, type FaultUser } from './workload.js';

const RESET_TIMEOUT_MS = 30_000;

describe('faults: PostgreSQL outage', function () {
  this.timeout(60_000);
  let env: FaultEnv;

  before(async function () {
    env = await createFaultEnv(this);
  });

  after(async () => {
    await env?.cleanup();
  });

  /** A gateway route behind the whole chain; the user is named by the x-user header. */
  function gateway(core: BillingCore, users: readonly FaultUser[]): (userId: string) => Promise<{ status: number; ms: number }> {
    const byId = new Map(users.map((user) => [user.id, user]));
    const app = new Koa();
    app.use(billingEligibility({ core, subject: (ctx) => subjectOf(byId.get(ctx.get('x-user'))!) }));
    app.use((ctx) => {
      ctx.body = { ok: true };
    });
    const server = app.callback();
    return async (userId) => {
      const started = performance.now();
      const res = await request(server).post('/v1/chat/completions').set('x-user', userId);
      return { status: res.status, ms: performance.now() - started };
    };
  }

  /** Checks each user once and waits until its entries are cached. */
  async function warm(core: BillingCore, users: readonly FaultUser[]): Promise<void> {
    for (const user of users) expect((await core.check(subjectOf(user))).allowed).to.equal(true);
    await waitFor(
      'warm entries to be cached',
      async () => {
        for (const user of users) {
          const read = await env.directCache.readBatch({ userId: user.id, balance: true, apiKeyId: user.keyId, platform: PLATFORM });
          if (!read.balance?.hit || !read.apiKeyWindows?.hit || !read.platformQuota?.hit) return false;
        }
        return true;
      },
      3000,
    );
  }

  async function usageRows(requestIds: string[]): Promise<number> {
    const [row] = (await env.directKnex(TABLES.usageLog).whereIn('request_id', requestIds).count({ n: '*' })) as [{ n: string | number }];
    return Number(row.n);
  }

  it('cut: warm checks pass, misses 503, breaker opens after 5 failures, half-opens and closes; settlements land once after restore', async () => {
    const users = makeUsers(12, 'pgcut');
    const [warmUsers, coldUsers] = [users.slice(0, 3), users.slice(3)];
    await seedUsers(env.directStore, users);
    const clock = new ManualClock(Date.now());
    const store = instrument<BillingStore>(env.store);
    const logger = recordingLogger();
    const core = env.makeCore({ store: store.target, clock, logger, circuitBreaker: { failureThreshold: 5, resetTimeoutMs: RESET_TIMEOUT_MS } });
    const knexErrors = env.knexErrors();
    const call = gateway(core, users);
    await warm(core, warmUsers);

    await env.pgProxy.cut();
    store.reset();
    const warmAnswers = [];
    for (let i = 0; i < 9; i++) warmAnswers.push(await call(warmUsers[i % 3]!.id));
    expect(
      warmAnswers.map((a) => a.status),
      'warm-cache answers during the cut',
    ).to.deep.equal(Array(9).fill(200));
    expect(store.total(), 'store calls for warm-cache requests').to.equal(0);

    const failures = [];
    for (const user of coldUsers.slice(0, 5)) {
      expect(core.breakerState, `breaker before failure ${failures.length + 1}`).to.equal('closed');
      failures.push(await call(user.id));
    }
    expect(
      failures.map((a) => a.status),
      'cache misses during the cut',
    ).to.deep.equal([503, 503, 503, 503, 503]);
    expect(store.count('getBalance')).to.equal(5);
    expect(core.breakerState, 'after 5 failures').to.equal('open');

    const whileOpen = [await call(coldUsers[5]!.id), await call(warmUsers[0]!.id)];
    expect(
      whileOpen.map((a) => a.status),
      'cold and warm requests while open',
    ).to.deep.equal([503, 503]);
    expect(store.count('getBalance'), 'store reads while open').to.equal(5);

    // Settlements made during the cut: retried with backoff; one id sent twice (a client retry).
    const costs = ['0.01234567', '0.00000001', '1.5'];
    const settle = (i: number) => core.settle({ requestId: `pgcut-r${i}`, subject: subjectOf(warmUsers[i]!), costUsd: costs[i]! });
    const settlements = [settle(0), settle(1), settle(2), settle(0)];
    let landed = 0;
    for (const s of settlements)
      void s.then(
        () => landed++,
        () => {},
      );
    await sleep(1000);
    expect(landed, 'settlements landed while PostgreSQL is cut').to.equal(0);

    clock.advance(RESET_TIMEOUT_MS);
    expect(core.breakerState, 'after the reset timeout').to.equal('half-open');
    expect((await call(coldUsers[5]!.id)).status, 'half-open probe while still cut').to.equal(503);
    expect(core.breakerState, 'a failed probe re-opens').to.equal('open');

    await env.pgProxy.restore();
    const restoredAt = performance.now();
    clock.advance(RESET_TIMEOUT_MS);
    expect(core.breakerState).to.equal('half-open');
    const probe = await call(coldUsers[5]!.id);
    expect(probe.status, 'half-open probe after restore').to.equal(200);
    expect(core.breakerState, 'a successful probe closes').to.equal('closed');
    expect((await call(coldUsers[6]!.id)).status).to.equal(200);

    const receipts = await Promise.all(settlements);
    const landedAfterMs = performance.now() - restoredAt;
    expect(receipts.filter((r) => r.duplicate).length, 'duplicates among the four receipts').to.equal(1);
    expect(await usageRows(['pgcut-r0', 'pgcut-r1', 'pgcut-r2'])).to.equal(3);
    for (let i = 0; i < 3; i++) {
      const balance = await env.directStore.getBalance(warmUsers[i]!.id);
      expect(formatUsd(balance!.balance)).to.equal(formatUsd(INITIAL_BALANCE_UNITS - BigInt(Math.round(Number(costs[i]) * 1e8))));
    }
    await core.close();
    const cached = await expectCacheEqualsStore(env.directCache, env.directStore, warmUsers, false);

    report(`warm-cache requests during the cut: ${warmAnswers.length}× 200, slowest ${Math.max(...warmAnswers.map((a) => a.ms)).toFixed(1)} ms, 0 store calls`);
    report(`misses during the cut: 5× 503 in ${failures.map((a) => a.ms.toFixed(1)).join(', ')} ms; breaker open; then 503 without the store`);
    report(`breaker: half-open after ${RESET_TIMEOUT_MS} ms, failed probe re-opened it; after restore a probe closed it (${probe.ms.toFixed(1)} ms)`);
    report(`knex connection errors while cut: ${env.knexErrors() - knexErrors} (logged by knex; silenced here)`);
    report(
      `settlements made during the cut: 3 (+1 repeat) landed ${landedAfterMs.toFixed(0)} ms after restore, once each; settlement_retry warnings: ${logger.count('billing settlement failed; retrying')}; cache: ${cached.hits} equal, ${cached.misses} invalidated`,
    );
  });

  it('close() drains settlements made during a cut once PostgreSQL is back', async () => {
    const users = makeUsers(2, 'pgdrain');
    await seedUsers(env.directStore, users);
    const core = env.makeCore();
    await env.pgProxy.cut();
    const ids = ['pgdrain-a', 'pgdrain-b', 'pgdrain-c'];
    const settlements = ids.map((requestId, i) => core.settle({ requestId, subject: subjectOf(users[i % 2]!), costUsd: '0.25' }));
    const restoreIn = setTimeout(() => void env.pgProxy.restore(), 1500);
    const started = performance.now();
    try {
      await core.close();
    } finally {
      clearTimeout(restoreIn);
    }
    const drainedMs = performance.now() - started;
    expect((await Promise.all(settlements)).map((r) => r.duplicate)).to.deep.equal([false, false, false]);
    expect(await usageRows(ids)).to.equal(3);
    expect(formatUsd((await env.directStore.getBalance(users[0]!.id))!.balance)).to.equal(formatUsd(INITIAL_BALANCE_UNITS - 50_000_000n));
    report(`close() returned ${drainedMs.toFixed(0)} ms after it was called (PostgreSQL restored after 1500 ms); 3 settlements stored once`);
  });

  it('black-holed: a miss answers 503 within the pg timeouts while warm checks pass; after restore the store answers again', async () => {
    const users = makeUsers(3, 'pghole');
    await seedUsers(env.directStore, users);
    const core = env.makeCore();
    const call = gateway(core, users);
    await warm(core, users.slice(0, 1));

    await env.pgProxy.blackhole();
    const warmAnswer = await call(users[0]!.id);
    const miss = await call(users[1]!.id);
    await env.pgProxy.restore();
    const after = await call(users[2]!.id);

    expect(warmAnswer.status).to.equal(200);
    expect(miss.status).to.equal(503);
    // pg gives up after query_timeout (pooled connection) or connectionTimeoutMillis (new one); the
    // single-flight's own 3 s load timeout would cap it anyway.
    const bound = PG_TIMEOUTS.query_timeout + 500;
    expect(miss.ms, 'ms until a black-holed miss is answered').to.be.below(bound);
    expect(after.status).to.equal(200);
    report(
      `warm check ${warmAnswer.ms.toFixed(1)} ms → 200; miss ${miss.ms.toFixed(0)} ms → 503 (bound ${bound} ms = query_timeout + 500); after restore ${after.ms.toFixed(1)} ms → 200`,
    );
  });
});

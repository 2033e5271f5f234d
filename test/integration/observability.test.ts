// Observability (docs/operations.md) on both backend pairs: Prometheus counters moving with decisions, cache reads, settlements and
// the breaker; IETF RateLimit fields on allowed and denied responses; shadow mode; fail-open warnings.
import { parseList as parseStructuredList } from 'structured-headers';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import request from 'supertest';
import { CHECK_TIMING_SAMPLE } from '../../lib/billing-core.js';
import { BillingMetrics } from '../../lib/metrics.js';
import type { BillingLogger, BillingSubject } from '../../lib/types.js';
import { billingEligibility, rpmLimit, billingContext } from '../../middleware/index.js';
import { balanceSubject, describeChain } from '../helpers/chain-harness.js';

/** The value of one series of a metric, 0 when absent. */
async function value(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  // A histogram's _count/_sum/_bucket series live under the histogram's own name.
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name || name.startsWith(`${m.name}_`));
  const series = (metric?.values ?? []) as { labels: Record<string, string | number>; value: number; metricName?: string }[];
  const match = series.find(
    (s) => (s.metricName === undefined || s.metricName === name) && Object.entries(labels).every(([k, v]) => String(s.labels[k]) === v),
  );
  return match?.value ?? 0;
}

function recordingLogger(): BillingLogger & { lines: { level: string; obj: object; msg?: string }[] } {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A response field parsed as a Structured Field List: [member, parameters] pairs. */
function structured(field: string | undefined): [string, Record<string, unknown>][] {
  expect(field, 'field present').to.be.a('string');
  return parseStructuredList(field!).map(([item, params]) => [item as string, Object.fromEntries(params)]);
}

describeChain('observability', (env) => {
  it('counts decisions by check and outcome, cache reads by entity, and settlements by result', async () => {
    const registry = new Registry();
    const core = env().makeCore({ metrics: new BillingMetrics({ registry }) });
    const rich = env().userId('rich');
    const broke = env().userId('broke');
    await core.admin.setBalance(rich, '5');
    await core.admin.setBalance(broke, '0');
    await request(
      env()
        .app({ core, subject: balanceSubject(rich) })
        .callback(),
    )
      .post('/')
      .expect(200);
    await request(
      env()
        .app({ core, subject: balanceSubject(broke) })
        .callback(),
    )
      .post('/')
      .expect(403);
    expect(await value(registry, 'billing_decisions_total', { check: 'balance', outcome: 'allowed' })).to.equal(1);
    expect(await value(registry, 'billing_decisions_total', { check: 'balance', outcome: 'denied' })).to.equal(1);
    expect(await value(registry, 'billing_decisions_total', { check: 'breaker', outcome: 'allowed' })).to.equal(2);
    expect(await value(registry, 'billing_cache_requests_total', { entity: 'balance', result: 'hit' })).to.equal(2);

    env().store.failWith(new Error('relation "billing_platform_quotas" does not exist'), ['getPlatformQuota']);
    await request(
      env()
        .app({ core, subject: balanceSubject(rich, { platform: 'openai' }) })
        .callback(),
    )
      .post('/')
      .expect(200);
    env().store.failWith(null);
    expect(await value(registry, 'billing_decisions_total', { check: 'platformQuota', outcome: 'failed_open' })).to.equal(1);
    expect(await value(registry, 'billing_cache_requests_total', { entity: 'platformQuota', result: 'miss' })).to.equal(1);

    const subject = balanceSubject(rich);
    await core.settle({ requestId: `m-${rich}`, subject, costUsd: '0.1' });
    await core.settle({ requestId: `m-${rich}`, subject, costUsd: '0.1' });
    await core.settle({ requestId: `m-${rich}`, subject, costUsd: '0.2' }).catch(() => undefined);
    await core.settle({ requestId: `m-${rich}-bad`, subject, costUsd: 'NaN' }).catch(() => undefined);
    for (const [result, n] of [
      ['stored', 1],
      ['duplicate', 1],
      ['conflict', 1],
      ['rejected', 1],
    ] as const) {
      expect(await value(registry, 'billing_settlements_total', { result }), result).to.equal(n);
    }
    const names = (await registry.getMetricsAsJSON()).flatMap((m) => m.values.flatMap((s) => Object.keys(s.labels)));
    expect(names.filter((label) => /user|key|subject/i.test(label))).to.deep.equal([], 'no per-user or per-key labels');
  });

  it('times the checks of one request in CHECK_TIMING_SAMPLE into the duration histogram', async () => {
    const registry = new Registry();
    const core = env().makeCore({ metrics: new BillingMetrics({ registry }) });
    const userId = env().userId();
    await core.admin.setBalance(userId, '5');
    for (let i = 0; i < 4 * CHECK_TIMING_SAMPLE; i++) await core.check(balanceSubject(userId));
    expect(await value(registry, 'billing_check_duration_seconds_count', { check: 'balance' })).to.equal(4);
    expect(await value(registry, 'billing_decisions_total', { check: 'balance', outcome: 'allowed' })).to.equal(4 * CHECK_TIMING_SAMPLE);
  });

  it('reports breaker transitions and state, the write queue and open reservations', async () => {
    const registry = new Registry();
    const core = env().makeCore({ metrics: new BillingMetrics({ registry }), circuitBreaker: { failureThreshold: 1, resetTimeoutMs: 1000 } });
    const userId = env().userId();
    await core.admin.topUp(userId, '5');
    await core.invalidateBalance(userId);
    env().store.failWith(new Error('down'), ['getBalance']);
    await request(
      env()
        .app({ core, subject: balanceSubject(userId) })
        .callback(),
    )
      .post('/')
      .expect(503);
    env().store.failWith(null);
    expect(await value(registry, 'billing_breaker_state')).to.equal(2);
    expect(await value(registry, 'billing_breaker_transitions_total', { from: 'closed', to: 'open' })).to.equal(1);
    const held = await core.check(balanceSubject(env().userId('other')), { estimateUsd: '1' }).catch(() => null);
    expect(held?.allowed ?? false).to.equal(false, 'breaker still open');
    env().clock.advance(1000);
    const decision = await core.check(balanceSubject(userId), { estimateUsd: '1' });
    expect(decision.allowed).to.equal(true);
    expect(await value(registry, 'billing_breaker_state')).to.equal(0);
    expect(await value(registry, 'billing_open_reservations')).to.equal(1);
    if (decision.allowed) decision.reservation?.release();
    expect(await value(registry, 'billing_open_reservations')).to.equal(0);
    expect(await value(registry, 'billing_write_queue_depth')).to.be.at.least(0);
  });

  it('sends RateLimit-Policy and RateLimit (requests) and Billing-Spend (USD), parsed as Structured Fields, on allowed and denied responses; each family can be turned off', async () => {
    const { core, clock, backend } = env();
    const userId = env().userId();
    await core.admin.setBalance(userId, '10');
    const subject: BillingSubject = { user: { id: userId, rpmLimit: 2 }, apiKey: { id: 'k1', rateLimit5h: '1' } };
    await core.settle({ requestId: `h-${userId}`, subject, costUsd: '0.25' });
    clock.advance(3_600_000); // one hour into the 5 h window
    const app = env().app({ subject });
    const first = await request(app.callback()).post('/').expect(200);
    expect(structured(first.headers['ratelimit-policy'])).to.deep.equal([['rpm-user', { q: 2, w: 60 }]]);
    const [rpm] = structured(first.headers.ratelimit);
    expect(rpm![0]).to.equal('rpm-user');
    expect(rpm![1].r).to.equal(1);
    const rpmReset = rpm![1].t as number;
    expect(rpmReset).to.be.within(1, 60);
    if (backend === 'memory+sqlite') expect(rpmReset).to.equal(60 - Math.floor((clock.now() % 60_000) / 1000));
    expect(structured(first.headers['billing-spend'])).to.deep.equal([
      ['balance', { r: 9_750_000 }],
      ['key-5h', { q: 1_000_000, w: 18_000, r: 750_000, t: 14_400 }],
    ]);

    await request(app.callback()).post('/').expect(200);
    const denied = await request(app.callback()).post('/').expect(429);
    expect(structured(denied.headers.ratelimit)[0]![1].r).to.equal(0);
    expect(denied.headers['retry-after']).to.be.a('string');

    const mounted = (rateLimitHeaders: boolean | { requests?: boolean; spend?: boolean }) =>
      env().app({ middleware: [billingEligibility({ core, subject: () => ({ ...subject, user: { id: userId } }), rateLimitHeaders })] });
    const fieldsOf = async (rateLimitHeaders: boolean | { requests?: boolean; spend?: boolean }) =>
      Object.keys((await request(mounted(rateLimitHeaders).callback()).post('/').expect(200)).headers)
        .filter((h) => /^(ratelimit|billing-spend)/.test(h))
        .sort();
    expect(await fieldsOf(false)).to.deep.equal([]);
    expect(await fieldsOf({ spend: false })).to.deep.equal([]); // no RPM cap on this subject: no requests family either
    expect(await fieldsOf({ requests: false })).to.deep.equal(['billing-spend']);
    expect(() => billingEligibility({ core, subject: () => subject, rateLimitHeaders: { usd: false } as never })).to.throw(/rateLimitHeaders\.usd/);
    expect(() => billingEligibility({ core, subject: () => subject, rateLimitHeaders: 'yes' as never })).to.throw(/rateLimitHeaders must be a boolean/);
  });

  it('shadow mode: a would-be denial passes, is recorded as shadow_deny, counted and logged once', async () => {
    const registry = new Registry();
    const logger = recordingLogger();
    const core = env().makeCore({ metrics: new BillingMetrics({ registry }), logger });
    const userId = env().userId();
    await core.admin.setBalance(userId, '0');
    const subject = balanceSubject(userId, { user: { id: userId, rpmLimit: 1 } });
    const app = env().app({ middleware: [billingEligibility({ core, subject: () => subject, shadow: ['balance', 'rpm'] })] });
    const first = await request(app.callback()).post('/').expect(200);
    expect(first.body.decision.checks.find((c: { check: string }) => c.check === 'balance')).to.include({
      outcome: 'shadow_deny',
      code: 'INSUFFICIENT_BALANCE',
    });
    const second = await request(app.callback()).post('/').expect(200);
    expect(second.body.decision.checks.find((c: { check: string }) => c.check === 'rpm')).to.include({ outcome: 'shadow_deny', code: 'USER_RPM_EXCEEDED' });
    expect(await value(registry, 'billing_decisions_total', { check: 'balance', outcome: 'shadow_deny' })).to.equal(2);
    expect(await value(registry, 'billing_decisions_total', { check: 'rpm', outcome: 'shadow_deny' })).to.equal(1);
    expect(logger.lines.filter((l) => l.level === 'warn' && (l.obj as { check?: string }).check === 'balance')).to.have.length(1, 'throttled');

    // Per middleware as well; an unshadowed check still blocks.
    const perRoute = env().app({ middleware: [billingContext({ core, subject: () => subject }), rpmLimit({ shadow: true })] });
    await request(perRoute.callback()).post('/').expect(200);
    await request(env().app({ core, subject }).callback()).post('/').expect(403);
    expect(() => billingEligibility({ core, subject: () => subject, shadow: ['balanse' as 'balance'] })).to.throw(/billingEligibility\.shadow/);
  });

  it('a fail-open logs one throttled warning naming the check and the cause, never the key or the subject', async () => {
    const logger = recordingLogger();
    const core = env().makeCore({ logger });
    const userId = env().userId();
    await core.admin.setBalance(userId, '1');
    const subject: BillingSubject = { user: { id: userId }, apiKey: { id: 'secret-key-id', rateLimit1d: '5' } };
    env().store.failWith(new Error('connection terminated unexpectedly'), ['getApiKeyWindows']);
    await core.invalidateApiKeyWindows(userId, 'secret-key-id');
    for (let i = 0; i < 5; i++) await request(env().app({ core, subject }).callback()).post('/').expect(200);
    env().store.failWith(null);
    const warnings = logger.lines.filter((l) => l.level === 'warn');
    expect(warnings).to.have.length(1);
    expect(warnings[0]!.obj).to.include({ check: 'apiKeyWindows' });
    expect(JSON.stringify(warnings[0])).to.include('connection terminated unexpectedly');
    expect(JSON.stringify(logger.lines)).to.not.include('secret-key-id');
    expect(JSON.stringify(logger.lines)).to.not.include(userId);
  });
});

// Unit tests for lib/metrics.ts: counters move on a real prom-client registry, labels stay bounded, noop records nothing.
import { expect } from 'chai';
import { Counter, Registry, register as globalRegistry } from 'prom-client';
import type { BreakerState } from '../../lib/breaker.js';
import type { CheckName } from '../../lib/decisions.js';
import { BillingMetrics, noopMetrics, type BillingGaugeSources } from '../../lib/metrics.js';
import { BillingConfigError } from '../../lib/options.js';

type Labels = Record<string, string | number>;

/**
 * The value of one series (0 when absent), read the way a scraper would. `suffix` picks a
 * histogram's `_bucket`, `_sum` or `_count` series.
 */
async function value(registry: Registry, name: string, labels: Labels = {}, suffix = ''): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  if (!metric) throw new Error(`metric ${name} is not registered`);
  const series = metric.values.find((s) => {
    const own = s.labels as Labels;
    const seriesName = (s as { metricName?: string }).metricName ?? name;
    return seriesName === name + suffix && Object.entries(labels).every(([k, val]) => own[k] === val);
  });
  return series?.value ?? 0;
}

function sources(overrides: Partial<BillingGaugeSources> = {}): BillingGaugeSources {
  return { writeQueueDepth: () => 0, writeQueueDropped: () => 0, openReservations: () => 0, breakerState: () => 'closed', ...overrides };
}

describe('BillingMetrics', () => {
  let registry: Registry;
  let metrics: BillingMetrics;

  beforeEach(() => {
    registry = new Registry();
    metrics = new BillingMetrics({ registry });
  });

  it('counts decisions by check and outcome, shadow denials included', async () => {
    metrics.decision('balance', 'allowed');
    metrics.decision('balance', 'allowed');
    metrics.decision('rpm', 'denied');
    metrics.decision('apiKeyWindows', 'failed_open');
    metrics.decision('platformQuota', 'shadow_deny');
    metrics.decision('reservation', 'skipped');

    const name = 'billing_decisions_total';
    expect(await value(registry, name, { check: 'balance', outcome: 'allowed' })).to.equal(2);
    expect(await value(registry, name, { check: 'rpm', outcome: 'denied' })).to.equal(1);
    expect(await value(registry, name, { check: 'apiKeyWindows', outcome: 'failed_open' })).to.equal(1);
    expect(await value(registry, name, { check: 'platformQuota', outcome: 'shadow_deny' })).to.equal(1);
    expect(await value(registry, name, { check: 'reservation', outcome: 'skipped' })).to.equal(1);
    expect(await value(registry, name, { check: 'rpm', outcome: 'allowed' })).to.equal(0);
    expect(await registry.metrics()).to.include('billing_decisions_total{check="balance",outcome="allowed"} 2');

    // Counts are handed to prom-client at scrape time: later events add to what was scraped.
    metrics.decision('balance', 'allowed');
    expect(await value(registry, name, { check: 'balance', outcome: 'allowed' })).to.equal(3);
    expect(await value(registry, name, { check: 'rpm', outcome: 'denied' })).to.equal(1);
  });

  it('honours registry.resetMetrics(): counters restart from zero', async () => {
    metrics.decision('rpm', 'denied');
    metrics.settlementRetry();
    expect(await value(registry, 'billing_decisions_total', { check: 'rpm', outcome: 'denied' })).to.equal(1);
    registry.resetMetrics();
    metrics.decision('rpm', 'denied');
    expect(await value(registry, 'billing_decisions_total', { check: 'rpm', outcome: 'denied' })).to.equal(1);
    expect(await value(registry, 'billing_settlement_retries_total')).to.equal(0);
  });

  it('pre-creates every known series at zero, so rate() works before the first event', async () => {
    const decisions = (await registry.getMetricsAsJSON()).find((m) => m.name === 'billing_decisions_total');
    // 8 checks × 5 outcomes.
    expect(decisions?.values).to.have.length(40);
    expect(decisions?.values.every((s) => s.value === 0)).to.equal(true);
  });

  it('observes check durations in sub-millisecond buckets and ignores values that are not durations', async () => {
    metrics.checkDuration('balance', 0.0003);
    metrics.checkDuration('balance', 0.02);
    metrics.checkDuration('balance', Number.NaN);
    metrics.checkDuration('balance', -1);
    metrics.checkDuration('balance', Number.POSITIVE_INFINITY);

    const name = 'billing_check_duration_seconds';
    expect(await value(registry, name, { check: 'balance' }, '_count')).to.equal(2);
    expect(await value(registry, name, { check: 'balance' }, '_sum')).to.be.closeTo(0.0203, 1e-12);
    expect(await value(registry, name, { check: 'balance', le: 0.00025 }, '_bucket')).to.equal(0);
    expect(await value(registry, name, { check: 'balance', le: 0.0005 }, '_bucket')).to.equal(1);
    expect(await value(registry, name, { check: 'balance', le: 0.025 }, '_bucket')).to.equal(2);
    expect(await value(registry, name, { check: 'rpm' }, '_count')).to.equal(0);
    expect(await registry.metrics()).to.include('billing_check_duration_seconds_count{check="rpm"} 0');
  });

  it('counts cache reads per entity and result', async () => {
    metrics.cache('balance', 'hit');
    metrics.cache('balance', 'hit');
    metrics.cache('balance', 'miss');
    metrics.cache('platformQuota', 'error');
    const name = 'billing_cache_requests_total';
    expect(await value(registry, name, { entity: 'balance', result: 'hit' })).to.equal(2);
    expect(await value(registry, name, { entity: 'balance', result: 'miss' })).to.equal(1);
    expect(await value(registry, name, { entity: 'platformQuota', result: 'error' })).to.equal(1);
  });

  it('counts settlements by result and their retries', async () => {
    metrics.settlement('stored');
    metrics.settlement('duplicate');
    metrics.settlement('stored');
    metrics.settlementRetry();
    metrics.settlementRetry();
    metrics.settlementRetry();
    expect(await value(registry, 'billing_settlements_total', { result: 'stored' })).to.equal(2);
    expect(await value(registry, 'billing_settlements_total', { result: 'duplicate' })).to.equal(1);
    expect(await value(registry, 'billing_settlements_total', { result: 'failed' })).to.equal(0);
    expect(await value(registry, 'billing_settlement_retries_total')).to.equal(3);
  });

  it('reports breaker transitions and reads the breaker state at scrape time', async () => {
    let state: BreakerState = 'closed';
    metrics.bindGauges(sources({ breakerState: () => state }));
    expect(await value(registry, 'billing_breaker_state')).to.equal(0);

    metrics.breakerTransition('closed', 'open');
    state = 'open';
    expect(await value(registry, 'billing_breaker_state')).to.equal(2);
    metrics.breakerTransition('open', 'half-open');
    state = 'half-open';
    expect(await value(registry, 'billing_breaker_state')).to.equal(1);

    expect(await value(registry, 'billing_breaker_transitions_total', { from: 'closed', to: 'open' })).to.equal(1);
    expect(await value(registry, 'billing_breaker_transitions_total', { from: 'open', to: 'half-open' })).to.equal(1);
    expect(await value(registry, 'billing_breaker_transitions_total', { from: 'half-open', to: 'closed' })).to.equal(0);
  });

  it('reads write-queue depth, drops, open reservations and slots in use from their getters; unbinding detaches them', async () => {
    let depth = 3;
    let dropped = 0;
    const unbind = metrics.bindGauges(
      sources({ writeQueueDepth: () => depth, writeQueueDropped: () => dropped, openReservations: () => 4, concurrencySlots: () => 2 }),
    );
    expect(await value(registry, 'billing_write_queue_depth')).to.equal(3);
    expect(await value(registry, 'billing_write_queue_dropped_total')).to.equal(0);
    expect(await value(registry, 'billing_open_reservations')).to.equal(4);
    expect(await value(registry, 'billing_concurrency_slots_in_use')).to.equal(2);

    depth = 0;
    dropped = 7;
    expect(await value(registry, 'billing_write_queue_depth')).to.equal(0);
    expect(await value(registry, 'billing_write_queue_dropped_total')).to.equal(7);
    expect(await registry.metrics()).to.match(/^# TYPE billing_write_queue_dropped_total counter$/m);

    unbind();
    depth = 9;
    expect(await value(registry, 'billing_write_queue_depth')).to.equal(0);
    expect(await value(registry, 'billing_open_reservations')).to.equal(0);
    expect(await value(registry, 'billing_concurrency_slots_in_use')).to.equal(0);
  });

  it('keeps the scrape working when a getter throws or returns nonsense', async () => {
    metrics.bindGauges(
      sources({
        writeQueueDepth: () => {
          throw new Error('queue gone');
        },
        writeQueueDropped: () => Number.NaN,
        breakerState: () => 'sideways' as BreakerState,
      }),
    );
    metrics.bindGauges(sources({ writeQueueDepth: () => 2 }));
    expect(await value(registry, 'billing_write_queue_depth')).to.equal(2);
    expect(await value(registry, 'billing_write_queue_dropped_total')).to.equal(0);
    expect(await value(registry, 'billing_breaker_state')).to.equal(0);
  });

  it('rejects a source that is not a function without binding any of the others', async () => {
    const bad = { ...sources({ writeQueueDepth: () => 5 }), breakerState: 'open' } as unknown as BillingGaugeSources;
    expect(() => metrics.bindGauges(bad)).to.throw(TypeError, /breakerState must be a function/);
    expect(await value(registry, 'billing_write_queue_depth')).to.equal(0);
  });

  it('never creates a label that could name a user or a key', async () => {
    metrics.decision('balance', 'allowed');
    metrics.cache('apiKeyWindows', 'hit');
    metrics.settlement('stored');
    const allowed = new Set(['check', 'outcome', 'entity', 'result', 'from', 'to', 'le']);
    for (const metric of await registry.getMetricsAsJSON()) {
      for (const series of metric.values) {
        for (const label of Object.keys(series.labels)) expect(allowed, `${metric.name} label ${label}`).to.include(label);
      }
    }
  });

  it('drops label values it does not know instead of growing a series per value', async () => {
    const before = (await registry.getMetricsAsJSON()).reduce((n, m) => n + m.values.length, 0);
    // A JavaScript caller bypassing the types, e.g. passing a user id where a check name belongs.
    metrics.decision('user-42' as CheckName, 'allowed');
    metrics.decision('balance', 'maybe' as 'allowed');
    metrics.cache('sk-secret' as 'balance', 'hit');
    metrics.settlement('sk-secret' as 'stored');
    metrics.breakerTransition('open', 'open');
    const after = await registry.getMetricsAsJSON();
    expect(after.reduce((n, m) => n + m.values.length, 0)).to.equal(before);
    expect(await registry.metrics()).not.to.include('sk-secret');
  });

  it('lets a second instance on the same registry reuse the metrics: counts add up, gauges combine', async () => {
    metrics.checkDuration('rpm', 0.001);
    metrics.settlement('stored');
    const second = new BillingMetrics({ registry });
    // Creating the second one must not reset what the first one recorded.
    expect(await value(registry, 'billing_check_duration_seconds', { check: 'rpm' }, '_count')).to.equal(1);
    expect(await value(registry, 'billing_settlements_total', { result: 'stored' })).to.equal(1);
    metrics.decision('rpm', 'allowed');
    second.decision('rpm', 'allowed');
    expect(await value(registry, 'billing_decisions_total', { check: 'rpm', outcome: 'allowed' })).to.equal(2);

    metrics.bindGauges(sources({ writeQueueDepth: () => 2, breakerState: () => 'closed' }));
    second.bindGauges(sources({ writeQueueDepth: () => 5, breakerState: () => 'open' }));
    expect(await value(registry, 'billing_write_queue_depth')).to.equal(7);
    // The worst breaker wins: one open breaker in the process is what an alert needs to see.
    expect(await value(registry, 'billing_breaker_state')).to.equal(2);
    expect((await registry.getMetricsAsJSON()).filter((m) => m.name === 'billing_decisions_total')).to.have.length(1);
  });

  it('uses the prefix for every name, so two prefixes coexist on one registry', async () => {
    const other = new BillingMetrics({ registry, prefix: 'gw_' });
    other.settlement('conflict');
    expect(await value(registry, 'gw_settlements_total', { result: 'conflict' })).to.equal(1);
    expect(await value(registry, 'billing_settlements_total', { result: 'conflict' })).to.equal(0);
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('gw_'));
    expect(names.sort()).to.deep.equal([
      'gw_breaker_state',
      'gw_breaker_transitions_total',
      'gw_cache_requests_total',
      'gw_check_duration_seconds',
      'gw_concurrency_slots_in_use',
      'gw_decisions_total',
      'gw_hold_extensions_total',
      'gw_open_reservations',
      'gw_settlement_batch_seconds',
      'gw_settlement_batch_size',
      'gw_settlement_retries_total',
      'gw_settlements_total',
      'gw_settlements_waiting',
      'gw_write_queue_depth',
      'gw_write_queue_dropped_total',
    ]);
  });

  it('counts hold extensions by result, dropping a label it does not know', async () => {
    metrics.holdExtension('extended');
    metrics.holdExtension('extended');
    metrics.holdExtension('refused');
    metrics.holdExtension('lost' as 'refused');
    expect(await value(registry, 'billing_hold_extensions_total', { result: 'extended' })).to.equal(2);
    expect(await value(registry, 'billing_hold_extensions_total', { result: 'refused' })).to.equal(1);
    expect(await value(registry, 'billing_hold_extensions_total', { result: 'unavailable' })).to.equal(0);
  });

  it('counts settlements per group-commit transaction and its commit time, and the settlements waiting', async () => {
    metrics.settlementBatch(1, 0.002);
    metrics.settlementBatch(40, 0.02);
    metrics.settlementBatch(Number.NaN, Number.NaN);
    const [sizes] = (await registry.getMetricsAsJSON()).filter((m) => m.name === 'billing_settlement_batch_size');
    const count = (sizes!.values as { metricName?: string; value: number }[]).find((v) => v.metricName === 'billing_settlement_batch_size_count');
    const sum = (sizes!.values as { metricName?: string; value: number }[]).find((v) => v.metricName === 'billing_settlement_batch_size_sum');
    expect([count?.value, sum?.value]).to.deep.equal([2, 41]);
    metrics.bindGauges(sources({ settlementsWaiting: () => 17 }));
    expect(await value(registry, 'billing_settlements_waiting')).to.equal(17);
  });

  it('refuses a bad prefix or registry with an error naming the option', () => {
    expect(() => new BillingMetrics({ registry, prefix: 'billing-' })).to.throw(BillingConfigError, /metrics\.prefix/);
    expect(() => new BillingMetrics({ registry: {} as Registry })).to.throw(BillingConfigError, /metrics\.registry/);
    expect(() => new BillingMetrics({ registry, colour: 'red' } as never)).to.throw(BillingConfigError, /metrics\.colour/);
  });

  it('refuses to adopt a metric of the same name that something else registered', () => {
    const foreign = new Registry();
    new Counter({ name: 'billing_decisions_total', help: 'not ours', labelNames: ['check', 'outcome'], registers: [foreign] });
    expect(() => new BillingMetrics({ registry: foreign })).to.throw(BillingConfigError, /billing_decisions_total is already registered/);
  });

  it('registers on the prom-client default registry when none is given', async () => {
    const prefix = `billing_default_${process.pid}_`;
    const onDefault = new BillingMetrics({ prefix });
    try {
      expect(onDefault.registry).to.equal(globalRegistry);
      onDefault.settlementRetry();
      expect(await value(globalRegistry, `${prefix}settlement_retries_total`)).to.equal(1);
    } finally {
      for (const m of globalRegistry.getMetricsAsArray()) if (m.name.startsWith(prefix)) globalRegistry.removeSingleMetric(m.name);
    }
  });
});

describe('noopMetrics', () => {
  it('has the same methods and records nothing anywhere', async () => {
    const before = await globalRegistry.getMetricsAsJSON();
    for (const method of Object.keys(noopMetrics)) expect(BillingMetrics.prototype).to.have.property(method);
    noopMetrics.decision('balance', 'denied');
    noopMetrics.checkDuration('balance', 0.001);
    noopMetrics.cache('balance', 'hit');
    noopMetrics.breakerTransition('closed', 'open');
    noopMetrics.settlement('stored');
    noopMetrics.settlementRetry();
    let read = 0;
    const unbind = noopMetrics.bindGauges(sources({ writeQueueDepth: () => ++read }));
    unbind();
    expect(read).to.equal(0);
    expect(await globalRegistry.getMetricsAsJSON()).to.deep.equal(before);
    expect(Object.isFrozen(noopMetrics)).to.equal(true);
  });
});

// Group commit through the core (docs/group-commit.md), on both backend pairs: concurrent settlements
// share transactions and each resolves with its own receipt; a lone one goes alone; the cache gets
// each touched row once per transaction; the options are validated like every other.
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { BillingMetrics } from '../../lib/metrics.js';
import { BillingConfigError } from '../../lib/options.js';
import { describeChain } from '../helpers/chain-harness.js';

describeChain('group commit', (env) => {
  it('200 concurrent settlements over 20 users share transactions: each gets its receipt, every balance is exact, the cache follows once per row', async () => {
    const { makeCore, store, cache, realStore } = env();
    const registry = new Registry();
    const core = makeCore({ metrics: new BillingMetrics({ registry }) });
    const users = Array.from({ length: 20 }, () => env().userId());
    for (const user of users) await core.admin.setBalance(user, '10');
    store.reset();
    cache.reset();
    const receipts = await Promise.all(
      Array.from({ length: 200 }, (_, i) => core.settle({ requestId: `gc-${users[i % 20]}-${i}`, subject: { user: { id: users[i % 20]! } }, costUsd: '0.01' })),
    );
    expect(receipts.every((r) => !r.duplicate && r.costUsd === '0.01000000' && r.charged)).to.equal(true);
    for (const user of users) expect((await realStore.getBalance(user))!.balance).to.equal(990_000_000n);
    const [sizes] = (await registry.getMetricsAsJSON()).filter((m) => m.name === 'billing_settlement_batch_size');
    const values = sizes!.values as { metricName?: string; value: number }[];
    const transactions = values.find((v) => v.metricName === 'billing_settlement_batch_size_count')!.value;
    expect(values.find((v) => v.metricName === 'billing_settlement_batch_size_sum')!.value).to.equal(200);
    expect(transactions).to.be.below(100, 'settlements shared transactions');
    expect(store.count('settleBatch')).to.be.above(0);
    // Each transaction puts each of its rows once, not once per settlement.
    expect(cache.count('put')).to.be.at.most(transactions * 20);
    expect(cache.count('put')).to.be.below(200);
    await core.close();
    const fresh = env().makeCore();
    for (const user of users) expect(await fresh.getBalance(user)).to.equal('9.90000000');
  });

  it('a lone settlement on an idle store goes at once through the plain path; maxBatchSize 1 never batches', async () => {
    const { makeCore, store } = env();
    const user = env().userId();
    const core = makeCore();
    await core.admin.setBalance(user, '1');
    store.reset();
    await core.settle({ requestId: `lone-${user}`, subject: { user: { id: user } }, costUsd: '0.1' });
    expect([store.count('settle'), store.count('settleBatch')]).to.deep.equal([1, 0]);
    const unbatched = makeCore({ settlementBatching: { maxBatchSize: 1 } });
    store.reset();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => unbatched.settle({ requestId: `one-${user}-${i}`, subject: { user: { id: user } }, costUsd: '0.01' })),
    );
    expect([store.count('settle'), store.count('settleBatch')]).to.deep.equal([20, 0]);
    expect(await unbatched.getBalance(user)).to.equal('0.70000000');
  });

  it('refuses bad batching options at construction, naming the option', () => {
    const { makeCore } = env();
    for (const [options, option] of [
      [{ maxBatchSize: 0 }, 'settlementBatching.maxBatchSize'],
      [{ maxBatchSize: 1001 }, 'settlementBatching.maxBatchSize'],
      [{ maxBatchesInFlight: 1.5 }, 'settlementBatching.maxBatchesInFlight'],
      [{ maxBatch: 10 }, 'settlementBatching.maxBatch'],
    ] as const) {
      expect(() => makeCore({ settlementBatching: options as never }))
        .to.throw(BillingConfigError)
        .with.property('option', option);
    }
  });
});

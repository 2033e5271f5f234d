// Regression: a settlement whose commit reached PostgreSQL but whose answer was lost is retried, the
// retry finds it already stored (a duplicate) — and the cache must not keep the pre-settlement value.
import { expect } from 'chai';
import { formatUsd } from '../../lib/money.js';
import type { BillingStore, SettlementInput, SettlementResult } from '../../lib/types.js';
import { createFaultEnv, report, type FaultEnv } from './fault-env.js';
import { INITIAL_BALANCE_UNITS, PLATFORM, makeUsers, seedUsers, subjectOf } from './workload.js';

describe('faults: settlement whose commit acknowledgement was lost', function () {
  this.timeout(30_000);
  let env: FaultEnv;

  before(async function () {
    env = await createFaultEnv(this);
  });

  after(async () => {
    await env?.cleanup();
  });

  /** The real store, except that the first settle of each request id commits and then "loses the connection". */
  function ackLosingStore(real: BillingStore): { store: BillingStore; lost: () => number } {
    const seen = new Set<string>();
    let lost = 0;
    const settle = async (input: SettlementInput): Promise<SettlementResult> => {
      const result = await real.settle(input);
      if (seen.has(input.requestId)) return result;
      seen.add(input.requestId);
      lost++;
      throw new Error('Connection terminated unexpectedly');
    };
    // Every other method runs bound to the real instance: the store keeps private fields.
    const store = new Proxy(real, {
      get(target, prop) {
        if (prop === 'settle') return settle;
        const value = Reflect.get(target, prop) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    return { store, lost: () => lost };
  }

  it('regression: a retried settlement that finds its own earlier commit invalidates the cached entries', async () => {
    const [user] = makeUsers(1, 'acklost');
    await seedUsers(env.directStore, [user!]);
    const { store, lost } = ackLosingStore(env.store);
    const core = env.makeCore({ store, settlementRetryDelayMs: 10 });
    expect((await core.check(subjectOf(user!))).allowed).to.equal(true);
    await core.close();
    const before = await env.directCache.readBatch({ userId: user!.id, balance: true, apiKeyId: user!.keyId, platform: PLATFORM });
    expect(before.balance?.hit, 'balance cached before the settlement').to.equal(true);

    const settling = env.makeCore({ store, settlementRetryDelayMs: 10 });
    const receipt = await settling.settle({ requestId: 'acklost-1', subject: subjectOf(user!), costUsd: '2.5' });
    await settling.close();
    expect(lost(), 'acknowledgements lost').to.equal(1);

    const stored = await env.directStore.getBalance(user!.id);
    expect(formatUsd(stored!.balance)).to.equal(formatUsd(INITIAL_BALANCE_UNITS - 250_000_000n));
    const after = await env.directCache.readBatch({ userId: user!.id, balance: true, apiKeyId: user!.keyId, platform: PLATFORM });
    for (const slot of ['balance', 'apiKeyWindows', 'platformQuota'] as const) {
      const entry = after[slot];
      // Either dropped (the next read loads the store) or already the stored row — never the old value.
      if (entry?.hit) expect(entry.value.version, `${slot} version in the cache`).to.not.equal((before[slot] as { value: { version: number } }).value.version);
    }
    if (after.balance?.hit) expect(after.balance.value).to.deep.equal(stored);
    report(`receipt duplicate=${receipt.duplicate}; store charged once; cached balance ${after.balance?.hit ? 'equal to the store' : 'invalidated'}`);
  });
});

// Contract: settlement (docs/behaviour.md#settlement) — exact charges, overdraft, idempotency, conflicts, zero cost, missing targets, what gets written where.
import { expect } from 'chai';
import { SettlementConflictError, SettlementTargetMissingError } from '../../lib/store/store-errors.js';
import { at, logRows, ms, settlement, usd, type GetFixture } from './store-fixtures.js';

export function settleContract(fx: GetFixture): void {
  const expiresAtMs = ms('2024-12-31T00:00:00Z');

  describe('balance mode', () => {
    it('subtracts the exact cost, returns the new balance with its version and logs the request', async () => {
      const { store, id } = fx();
      const [user, request] = [id('u'), id('r')];
      await store.topUp(user, usd('10'));
      const result = await store.settle(
        settlement({
          requestId: request,
          userId: user,
          costUnits: usd('0.12345678'),
          model: 'gpt-4o',
          inputTokens: 1200,
          outputTokens: 345,
          platform: 'openai',
        }),
      );
      expect(result).to.deep.equal({ duplicate: false, requestId: request, costUnits: usd('0.12345678'), balance: { version: 2, balance: usd('9.87654322') } });
      expect(await store.getBalance(user)).to.deep.equal({ version: 2, balance: usd('9.87654322') });
      expect(await store.listUsage(user, 10)).to.deep.equal([
        {
          requestId: request,
          apiKeyId: '',
          userId: user,
          groupId: null,
          mode: 'balance',
          costUnits: usd('0.12345678'),
          platform: 'openai',
          model: 'gpt-4o',
          inputTokens: 1200,
          outputTokens: 345,
          createdAtMs: ms('2024-03-06T12:00:00Z'),
        },
      ]);
    });

    it('lets the request that crosses zero overdraw, and keeps charging later ones (the gate, not the store, refuses)', async () => {
      const { store, id } = fx();
      const user = id('u');
      await store.topUp(user, usd('1'));
      expect((await store.settle(settlement({ requestId: id('r'), userId: user, costUnits: usd('1') }))).balance).to.deep.equal({ version: 2, balance: 0n });
      expect((await store.settle(settlement({ requestId: id('r'), userId: user, costUnits: usd('1.5') }))).balance).to.deep.equal({
        version: 3,
        balance: usd('-1.5'),
      });
      expect((await store.settle(settlement({ requestId: id('r'), userId: user, costUnits: usd('0.25') }))).balance).to.deep.equal({
        version: 4,
        balance: usd('-1.75'),
      });
    });

    it('refuses a user without an account and writes nothing, not even the log row', async () => {
      const { store, id } = fx();
      const user = id('u');
      const err = await store.settle(settlement({ requestId: id('r'), userId: user, apiKeyId: id('k'), trackKeyWindows: true })).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(SettlementTargetMissingError).with.property('target', 'account');
      expect((err as Error).message).to.contain(user);
      expect(await logRows(fx(), user)).to.deep.equal([]);
      expect(await store.getBalance(user)).to.equal(null);
    });
  });

  describe('idempotency', () => {
    it('a repeat with the same content is a no-op returning the first result, even at a later time', async () => {
      const { store, id } = fx();
      const [user, key, request] = [id('u'), id('k'), id('r')];
      await store.topUp(user, usd('5'));
      const input = settlement({ requestId: request, userId: user, apiKeyId: key, trackKeyWindows: true, costUnits: usd('0.5'), model: 'm' });
      const first = await store.settle(input);
      expect(first.balance).to.deep.equal({ version: 2, balance: usd('4.5') });
      const again = await store.settle({ ...input, time: at('2024-03-09T00:00:00Z') });
      expect(again).to.deep.equal({ duplicate: true, requestId: request, costUnits: usd('0.5') });
      expect(await store.getBalance(user)).to.deep.equal({ version: 2, balance: usd('4.5') });
      expect(await store.getApiKeyWindows(user, key)).to.deep.equal(first.apiKeyWindows);
      expect(await logRows(fx(), user)).to.have.length(1);
    });

    it('the same id with different content is a SettlementConflictError and changes nothing', async () => {
      const { store, id } = fx();
      const [user, request] = [id('u'), id('r')];
      await store.topUp(user, usd('5'));
      const input = settlement({ requestId: request, userId: user, costUnits: usd('0.5'), model: 'm', inputTokens: 10, platform: 'openai' });
      await store.settle(input);
      const variants = [{ costUnits: usd('0.50000001') }, { model: 'other' }, { inputTokens: 11 }, { platform: 'anthropic' }, { outputTokens: 0 }];
      for (const change of variants) {
        const err = await store.settle({ ...input, ...change }).catch((e: unknown) => e);
        expect(err, JSON.stringify(Object.keys(change)))
          .to.be.instanceOf(SettlementConflictError)
          .with.property('requestId', request);
      }
      expect(await store.getBalance(user)).to.deep.equal({ version: 2, balance: usd('4.5') });
      expect(await logRows(fx(), user)).to.have.length(1);
    });

    it('deduplicates on (requestId, apiKeyId): another key is another settlement, no key dedups too', async () => {
      const { store, id } = fx();
      const [user, request] = [id('u'), id('r')];
      await store.topUp(user, usd('5'));
      const base = settlement({ requestId: request, userId: user, costUnits: usd('1') });
      expect((await store.settle(base)).duplicate).to.equal(false);
      expect((await store.settle(base)).duplicate).to.equal(true);
      expect((await store.settle({ ...base, apiKeyId: id('k') })).duplicate).to.equal(false);
      expect((await store.settle({ ...base, apiKeyId: id('k') })).duplicate).to.equal(false);
      expect(await store.getBalance(user)).to.deep.equal({ version: 4, balance: usd('2') });
      expect(await logRows(fx(), user)).to.have.length(3);
    });
  });

  describe('log-only settlements', () => {
    for (const [name, change] of [
      ['a zero cost', { costUnits: 0n }],
      ['charge: false (runMode simple)', { charge: false }],
    ] as const) {
      it(`${name} writes the usage log and nothing else`, async () => {
        const { store, id } = fx();
        const [user, key, request] = [id('u'), id('k'), id('r')];
        await store.topUp(user, usd('1'));
        const quota = await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('1') });
        const result = await store.settle(
          settlement({ requestId: request, userId: user, apiKeyId: key, trackKeyWindows: true, platform: 'openai', ...change }),
        );
        expect(result).to.deep.equal({ duplicate: false, requestId: request, costUnits: result.costUnits });
        expect(await store.getBalance(user)).to.deep.equal({ version: 1, balance: usd('1') });
        expect((await store.getApiKeyWindows(user, key)).version).to.equal(0);
        expect(await store.getPlatformQuota(user, 'openai')).to.deep.equal(quota);
        expect(await logRows(fx(), user)).to.deep.equal([{ request_id: request, api_key_id: key }]);
      });
    }

    it('a zero cost needs no account (nothing is charged)', async () => {
      const { store, id } = fx();
      const user = id('u');
      expect((await store.settle(settlement({ requestId: id('r'), userId: user, costUnits: 0n }))).duplicate).to.equal(false);
      expect(await logRows(fx(), user)).to.have.length(1);
    });
  });

  describe('subscription mode', () => {
    it('adds the cost to the three windows of the (user, group) subscription and leaves the balance alone', async () => {
      const { store, id } = fx();
      const [user, group] = [id('u'), id('g')];
      await store.topUp(user, usd('1'));
      await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs });
      const input = { userId: user, groupId: group, mode: 'subscription' as const };
      await store.settle(settlement({ ...input, requestId: id('r'), costUnits: usd('0.3') }));
      const result = await store.settle(settlement({ ...input, requestId: id('r'), costUnits: usd('0.4') }));
      expect(result.subscription).to.deep.include({ version: 3, dailyUsage: usd('0.7'), weeklyUsage: usd('0.7'), monthlyUsage: usd('0.7') });
      expect(result.balance).to.equal(undefined);
      expect(await store.getBalance(user)).to.deep.equal({ version: 1, balance: usd('1') });
      expect(await store.getActiveSubscription(user, group, at('2024-03-06T12:00:00Z'))).to.deep.equal(result.subscription);
    });

    it('charges an admitted request even if the subscription was revoked meanwhile', async () => {
      const { store, id } = fx();
      const [user, group] = [id('u'), id('g')];
      await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs, status: 'revoked' });
      const result = await store.settle(settlement({ requestId: id('r'), userId: user, groupId: group, mode: 'subscription', costUnits: usd('2') }));
      expect(result.subscription).to.deep.include({ status: 'revoked', dailyUsage: usd('2') });
    });

    it('refuses a user without a subscription row for the group and writes nothing', async () => {
      const { store, id } = fx();
      const [user, group, key] = [id('u'), id('g'), id('k')];
      await store.topUp(user, usd('1'));
      await store.upsertSubscription({ userId: user, groupId: id('g'), expiresAtMs });
      const err = await store
        .settle(settlement({ requestId: id('r'), userId: user, groupId: group, mode: 'subscription', apiKeyId: key, trackKeyWindows: true }))
        .catch((e: unknown) => e);
      expect(err).to.be.instanceOf(SettlementTargetMissingError).with.property('target', 'subscription');
      expect(await logRows(fx(), user)).to.deep.equal([]);
      expect((await store.getApiKeyWindows(user, key)).version).to.equal(0);
    });

    it('never charges a platform quota (quotas apply in balance mode only)', async () => {
      const { store, id } = fx();
      const [user, group] = [id('u'), id('g')];
      await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs });
      const quota = await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('1') });
      const result = await store.settle(settlement({ requestId: id('r'), userId: user, groupId: group, mode: 'subscription', platform: 'openai' }));
      expect(result.platformQuota).to.equal(undefined);
      expect(await store.getPlatformQuota(user, 'openai')).to.deep.equal(quota);
    });
  });

  describe('key windows and platform quota', () => {
    it('tracks key windows only when asked, and creates the row on first use', async () => {
      const { store, id } = fx();
      const [user, key] = [id('u'), id('k')];
      await store.topUp(user, usd('5'));
      await store.settle(settlement({ requestId: id('r'), userId: user, apiKeyId: key, trackKeyWindows: false }));
      expect(await store.getApiKeyWindows(user, key)).to.deep.equal({
        version: 0,
        usage5h: 0n,
        usage1d: 0n,
        usage7d: 0n,
        start5hMs: null,
        start1dMs: null,
        start7dMs: null,
      });
      const result = await store.settle(settlement({ requestId: id('r'), userId: user, apiKeyId: key, trackKeyWindows: true, costUnits: usd('0.2') }));
      expect(result.apiKeyWindows).to.deep.include({ version: 1, usage5h: usd('0.2'), usage1d: usd('0.2'), usage7d: usd('0.2') });
      expect(await store.getApiKeyWindows(user, key)).to.deep.equal(result.apiKeyWindows);
    });

    it('charges the quota row of (user, platform) only: other platforms untouched, no row created', async () => {
      const { store, id } = fx();
      const user = id('u');
      await store.topUp(user, usd('5'));
      const other = await store.setPlatformQuota(user, 'anthropic', { dailyLimit: usd('1') });
      await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('1') });
      const result = await store.settle(settlement({ requestId: id('r'), userId: user, platform: 'openai', costUnits: usd('0.75') }));
      expect(result.platformQuota).to.deep.include({ version: 2, dailyUsage: usd('0.75'), weeklyUsage: usd('0.75'), monthlyUsage: usd('0.75') });
      expect(await store.getPlatformQuota(user, 'anthropic')).to.deep.equal(other);
      const none = await store.settle(settlement({ requestId: id('r'), userId: user, platform: 'gemini' }));
      expect(none.platformQuota).to.equal(undefined);
      expect(await store.getPlatformQuota(user, 'gemini')).to.equal(null);
    });

    it('resetApiKeyWindows zeroes every window of a used key and reads version 0 for an unused one', async () => {
      const { store, id } = fx();
      const [user, key] = [id('u'), id('k')];
      expect(await store.resetApiKeyWindows(user, key)).to.include({ version: 0, usage5h: 0n });
      expect((await store.getApiKeyWindows(user, key)).version).to.equal(0);
      await store.topUp(user, usd('5'));
      await store.settle(settlement({ requestId: id('r'), userId: user, apiKeyId: key, trackKeyWindows: true }));
      const reset = await store.resetApiKeyWindows(user, key);
      expect(reset).to.deep.equal({ version: 2, usage5h: 0n, usage1d: 0n, usage7d: 0n, start5hMs: null, start1dMs: null, start7dMs: null });
      expect(await store.getApiKeyWindows(user, key)).to.deep.equal(reset);
    });
  });

  it('listUsage returns the newest rows first, up to the limit, for that user only', async () => {
    const { store, id } = fx();
    const [user, other] = [id('u'), id('u')];
    await store.topUp(user, usd('5'));
    await store.topUp(other, usd('5'));
    const requests = [id('r'), id('r'), id('r')];
    for (const [i, requestId] of requests.entries()) {
      await store.settle(settlement({ requestId, userId: user, time: at(`2024-03-06T12:00:0${i}Z`) }));
    }
    await store.settle(settlement({ requestId: id('r'), userId: other }));
    expect((await store.listUsage(user, 2)).map((r) => r.requestId)).to.deep.equal([requests[2], requests[1]]);
    expect(await store.listUsage(user, 1000)).to.have.length(3);
  });
}

// Contract: malformed input is refused at the boundary with an error naming the field, before any SQL runs, and writes nothing.
import { expect } from 'chai';
import type { SettlementInput } from '../../lib/types.js';
import { BillingValidationError } from '../../lib/validate.js';
import { logRows, settlement, usd, type GetFixture, type StoreFixture } from './store-fixtures.js';

/** Calls `call`, expects a BillingValidationError for `field`, and that not one query reached the database. */
async function refused(fx: StoreFixture, field: string, call: () => Promise<unknown>): Promise<BillingValidationError> {
  const before = fx.queries();
  const err = await call().then(
    () => expect.fail(`expected a BillingValidationError for ${field}`),
    (e: unknown) => e,
  );
  expect(err, field).to.be.instanceOf(BillingValidationError);
  expect((err as BillingValidationError).field, (err as Error).message).to.equal(field);
  expect(fx.queries(), `SQL ran before ${field} was refused`).to.equal(before);
  return err as BillingValidationError;
}

const bad = <T>(value: unknown): T => value as T;

export function validationContract(fx: GetFixture): void {
  describe('settle', () => {
    // Each case: the field that must be named, and what is wrong with the input.
    const cases: [string, string, Partial<SettlementInput>][] = [
      ['costUnits', 'NaN', { costUnits: bad(Number.NaN) }],
      ['costUnits', 'negative', { costUnits: -1n }],
      ['costUnits', 'a non-numeric string', { costUnits: bad('abc') }],
      ['costUnits', 'a numeric string instead of units', { costUnits: bad('0.5') }],
      ['costUnits', 'a float', { costUnits: bad(0.5) }],
      ['costUnits', 'beyond 2^53−1 units', { costUnits: 2n ** 53n }],
      ['platform', 'with a space', { platform: 'open ai' }],
      ['platform', 'upper case', { platform: 'OpenAI' }],
      ['platform', '33 characters', { platform: 'a'.repeat(33) }],
      ['requestId', '10 KB long', { requestId: 'r'.repeat(10 * 1024) }],
      ['requestId', 'empty', { requestId: '' }],
      ['requestId', 'with a space', { requestId: 'req 1' }],
      ['userId', 'with a colon', { userId: 'u:1' }],
      ['userId', 'an object', { userId: bad({}) }],
      ['apiKeyId', 'with braces', { apiKeyId: 'k{1}' }],
      ['groupId', 'missing in subscription mode', { mode: 'subscription', groupId: null }],
      ['mode', 'unknown', { mode: bad('credit') }],
      ['trackKeyWindows', 'not a boolean', { trackKeyWindows: bad('yes') }],
      ['model', '129 characters', { model: 'm'.repeat(129) }],
      ['inputTokens', 'negative', { inputTokens: -1 }],
      ['outputTokens', 'fractional', { outputTokens: 1.5 }],
      ['time.nowMs', 'NaN', { time: { nowMs: Number.NaN, timezone: 'UTC' } }],
      ['time.timezone', 'not a zone', { time: { nowMs: Date.now(), timezone: 'Mars/Olympus_Mons' } }],
    ];

    for (const [field, what, change] of cases) {
      it(`refuses ${field} ${what}, writing nothing`, async () => {
        const f = fx();
        const user = f.id('u');
        await f.store.topUp(user, usd('1'));
        const input = settlement({ requestId: f.id('r'), userId: user, apiKeyId: f.id('k'), trackKeyWindows: true, ...change });
        const err = await refused(f, field, () => f.store.settle(input));
        if (field === 'requestId') expect(err.message.length, 'the message quotes a 10 KB id whole').to.be.below(300);
        expect(await f.store.getBalance(user)).to.deep.equal({ version: 1, balance: usd('1') });
        expect(await logRows(f, user)).to.deep.equal([]);
      });
    }
  });

  describe('reads and administration writes', () => {
    it('refuses malformed ids, platforms, times and limits on every method', async () => {
      const f = fx();
      const { store } = f;
      const time = { nowMs: Date.now(), timezone: 'UTC' };
      await refused(f, 'userId', () => store.getBalance(''));
      await refused(f, 'userId', () => store.getBalance(bad(-1)));
      await refused(f, 'groupId', () => store.getActiveSubscription('u1', 'g 1', time));
      await refused(f, 'time.timezone', () => store.getActiveSubscription('u1', 'g1', { nowMs: Date.now(), timezone: '+02:00' }));
      await refused(f, 'apiKeyId', () => store.getApiKeyWindows('u1', 'k}'));
      await refused(f, 'platform', () => store.getPlatformQuota('u1', 'Anthropic'));
      await refused(f, 'groupId', () => store.getRpmOverride('u1', ''));
      await refused(f, 'time.nowMs', () => store.resetExpiredApiKeyWindows('u1', 'k1', { nowMs: 1.5, timezone: 'UTC' }));
      await refused(f, 'limit', () => store.listUsage('u1', 0));
      await refused(f, 'limit', () => store.listUsage('u1', 1001));
      await refused(f, 'amount', () => store.topUp('u1', bad(1.5)));
      await refused(f, 'amount', () => store.topUp('u1', bad('10')));
      await refused(f, 'amount', () => store.setBalance('u1', 2n ** 53n));
      await refused(f, 'status', () => store.upsertSubscription({ userId: 'u1', groupId: 'g1', expiresAtMs: Date.now(), status: bad('paused') }));
      await refused(f, 'expiresAtMs', () => store.upsertSubscription({ userId: 'u1', groupId: 'g1', expiresAtMs: Number.NaN }));
      await refused(f, 'startsAtMs', () => store.upsertSubscription({ userId: 'u1', groupId: 'g1', expiresAtMs: Date.now(), startsAtMs: bad('now') }));
      await refused(f, 'dailyLimit', () => store.setPlatformQuota('u1', 'openai', { dailyLimit: -1n }));
      await refused(f, 'monthlyLimit', () => store.setPlatformQuota('u1', 'openai', { monthlyLimit: bad('5') }));
      await refused(f, 'limits', () => store.setPlatformQuota('u1', 'openai', bad({ dailyLimitUsd: '5' })));
      await refused(f, 'platform', () => store.setPlatformQuota('u1', '-openai', {}));
      await refused(f, 'rpmOverride', () => store.setRpmOverride('u1', 'g1', -1));
      await refused(f, 'rpmOverride', () => store.setRpmOverride('u1', 'g1', 2.5));
      await refused(f, 'rpmOverride', () => store.setRpmOverride('u1', 'g1', bad(undefined)));
      await refused(f, 'apiKeyId', () => store.resetApiKeyWindows('u1', ''));
    });
  });
}

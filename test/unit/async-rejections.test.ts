// Every async public method reports bad input as a rejected promise, never a synchronous throw, so a
// caller's .catch() (or a forgotten await's unhandled-rejection handler) sees it (regression:
// core.invalidateBalance('x{y}') threw synchronously).
import { expect } from 'chai';
import knexFactory from 'knex';
import { createBillingCore } from '../../lib/billing-core.js';
import { MemoryBillingCache } from '../../lib/cache/memory-cache.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { migrateBillingSchema } from '../../lib/store/migrations.js';

describe('async methods reject bad input', () => {
  const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: ':memory:' }, useNullAsDefault: true });
  const cache = new MemoryBillingCache();
  const core = createBillingCore({ store: new KnexBillingStore(knex), cache });

  before(() => migrateBillingSchema(knex));
  after(async () => {
    await core.close();
    await cache.close();
    await knex.destroy();
  });

  const calls: [string, () => Promise<unknown>][] = [
    ['invalidateBalance', () => core.invalidateBalance('x{y}')],
    ['invalidateSubscription', () => core.invalidateSubscription('u', 'g:1')],
    ['invalidateApiKeyWindows', () => core.invalidateApiKeyWindows('u', 'k k')],
    ['invalidatePlatformQuota', () => core.invalidatePlatformQuota('u', 'x{y}')],
    ['invalidateRpmOverride', () => core.invalidateRpmOverride('', 'g')],
    ['settle(undefined)', () => core.settle(undefined as never)],
    ['settle with a bigint cost', () => core.settle({ requestId: 'r', subject: { user: { id: 'u' } }, costUsd: 10n as never })],
    ['check(null)', () => core.check(null as never)],
    ['listReservations', () => core.listReservations('a b')],
    ['getBalance', () => core.getBalance({} as never)],
    ['listUsage', () => core.listUsage('x{y}')],
    ['admin.topUp', () => core.admin.topUp('u', '-1')],
    ['admin.setPlatformQuota', () => core.admin.setPlatformQuota('u', 'openai', { dailyLimitUsd: '0.000000001' })],
  ];
  for (const [name, call] of calls) {
    it(`${name} returns a rejected promise`, async () => {
      let returned: Promise<unknown> | undefined;
      expect(() => (returned = call()), 'no synchronous throw').to.not.throw();
      expect(returned).to.be.instanceOf(Promise);
      let error: unknown;
      await returned!.catch((err: unknown) => (error = err));
      expect(error).to.be.instanceOf(Error);
    });
  }
});

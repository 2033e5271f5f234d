// The BillingStore contract: one suite, run against every backend by the store-*.test.ts files beside it.
import { accountContract } from './store-contract-accounts.js';
import { batchContract } from './store-contract-batch.js';
import { holdContract } from './store-contract-holds.js';
import { settleContract } from './store-contract-settle.js';
import { validationContract } from './store-contract-validation.js';
import { windowContract } from './store-contract-windows.js';
import { makeFixture, type OpenedDatabase, type StoreFixture } from './store-fixtures.js';

/**
 * Defines the whole suite inside the caller's `describe`. `open` creates one migrated database for
 * the suite; tests isolate themselves with fresh ids rather than fresh databases, which keeps the
 * PostgreSQL run quick.
 */
export function defineStoreContract(open: () => Promise<OpenedDatabase>): void {
  let db: OpenedDatabase | undefined;
  let fixture: StoreFixture | undefined;

  before(async function () {
    db = await open();
    fixture = makeFixture(db);
  });

  after(async function () {
    await db?.destroy();
  });

  const get = (): StoreFixture => {
    if (!fixture) throw new Error('store fixture used before the suite opened its database');
    return fixture;
  };

  describe('balances, subscriptions, RPM overrides', () => accountContract(get));
  describe('settlement', () => settleContract(get));
  describe('windows', () => windowContract(get));
  describe('group commit', () => batchContract(get));
  describe('store holds', () => holdContract(get));
  describe('input validation', () => validationContract(get));
}

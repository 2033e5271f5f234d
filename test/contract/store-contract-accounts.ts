// Contract: balances, subscriptions, platform-quota limits, RPM overrides and migrations, through the administration writes and the reads.
import { expect } from 'chai';
import { MAX_USD_UNITS } from '../../lib/money.js';
import { dialectOf } from '../../lib/store/dialect.js';
import { migrateBillingSchema } from '../../lib/store/migrations.js';
import { StoreDataError } from '../../lib/store/store-errors.js';
import { BillingValidationError } from '../../lib/validate.js';
import { at, DAY, ms, settlement, usd, type GetFixture } from './store-fixtures.js';

export function accountContract(fx: GetFixture): void {
  describe('balance', () => {
    it('reads null for a user without an account', async () => {
      expect(await fx().store.getBalance(fx().id('nobody'))).to.equal(null);
    });

    it('topUp creates the account at version 1 and adds exactly after that', async () => {
      const { store, id } = fx();
      const user = id('u');
      expect(await store.topUp(user, usd('0.1'))).to.deep.equal({ version: 1, balance: usd('0.1') });
      expect(await store.topUp(user, usd('0.2'))).to.deep.equal({ version: 2, balance: usd('0.3') });
      expect(await store.getBalance(user)).to.deep.equal({ version: 2, balance: 30_000_000n });
    });

    it('setBalance creates or overwrites, bumping the version, and keeps ±2^53−1 units exact', async () => {
      const { store, id } = fx();
      const user = id('u');
      expect(await store.setBalance(user, MAX_USD_UNITS)).to.deep.equal({ version: 1, balance: MAX_USD_UNITS });
      expect(await store.setBalance(user, -MAX_USD_UNITS)).to.deep.equal({ version: 2, balance: -MAX_USD_UNITS });
      expect(await store.setBalance(user, 1n)).to.deep.equal({ version: 3, balance: 1n });
      expect(await store.getBalance(user)).to.deep.equal({ version: 3, balance: 1n });
    });

    it('topUp refuses zero and negative amounts without creating the account', async () => {
      const { store, id } = fx();
      const user = id('u');
      for (const amount of [0n, -1n]) {
        const err = await store.topUp(user, amount).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(BillingValidationError).with.property('field', 'amount');
      }
      expect(await store.getBalance(user)).to.equal(null);
    });

    it('topUp refuses to take a balance beyond the exact range and changes nothing', async () => {
      const { store, id } = fx();
      const user = id('u');
      await store.setBalance(user, MAX_USD_UNITS - 5n);
      expect(await store.topUp(user, 5n)).to.deep.equal({ version: 2, balance: MAX_USD_UNITS });
      const err = await store.topUp(user, 1n).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(BillingValidationError).with.property('field', 'amount');
      expect(await store.getBalance(user)).to.deep.equal({ version: 2, balance: MAX_USD_UNITS });
    });

    it('a stored amount beyond the exact range (a foreign writer) fails loudly naming the column, never rounds', async () => {
      const { store, id, knex } = fx();
      const user = id('u');
      await store.setBalance(user, 1n);
      // 10^11 USD, 2^60 units: fit NUMERIC(20,8) and SQLite's INTEGER, but not 2^53 units.
      const huge = dialectOf(knex).name === 'postgresql' ? '100000000000' : knex.raw('1152921504606846976');
      await knex('billing_accounts').where({ user_id: user }).update({ balance: huge });
      const err = await store.getBalance(user).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(StoreDataError).with.property('column', 'billing_accounts.balance');
    });
  });

  describe('subscription', () => {
    const expiresAtMs = ms('2024-04-01T00:00:00Z');

    it('upsert creates an active subscription with zero usage, never-started windows and the clock as start', async () => {
      const { store, id, knex, clock } = fx();
      const [user, group] = [id('u'), id('g')];
      const sub = await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs });
      expect(sub).to.deep.include({
        version: 1,
        status: 'active',
        expiresAtMs,
        dailyUsage: 0n,
        weeklyUsage: 0n,
        monthlyUsage: 0n,
        dailyStartMs: null,
        weeklyStartMs: null,
        monthlyStartMs: null,
      });
      expect(sub.subscriptionId).to.match(/^\d+$/);
      const [row] = await knex('billing_subscriptions').where({ user_id: user, group_id: group }).select('starts_at_ms');
      expect(Number(row.starts_at_ms)).to.equal(clock.now());
    });

    it('is active until its expiry instant, not at it (exact expiry is rejected)', async () => {
      const { store, id } = fx();
      const [user, group] = [id('u'), id('g')];
      const created = await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs, startsAtMs: ms('2024-03-01T00:00:00Z') });
      expect(await store.getActiveSubscription(user, group, { nowMs: expiresAtMs - 1, timezone: 'UTC' })).to.deep.equal(created);
      expect(await store.getActiveSubscription(user, group, { nowMs: expiresAtMs, timezone: 'UTC' })).to.equal(null);
    });

    it('is not active when revoked or suspended, nor for another group or user', async () => {
      const { store, id } = fx();
      const [user, group] = [id('u'), id('g')];
      const now = at('2024-03-06T00:00:00Z');
      await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs });
      expect(await store.getActiveSubscription(user, id('g'), now)).to.equal(null);
      expect(await store.getActiveSubscription(id('u'), group, now)).to.equal(null);
      for (const status of ['revoked', 'suspended', 'expired'] as const) {
        const sub = await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs, status });
        expect(sub.status).to.equal(status);
        expect(await store.getActiveSubscription(user, group, now)).to.equal(null);
      }
      await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs });
      expect(await store.getActiveSubscription(user, group, now)).to.include({ status: 'active', version: 5 });
    });

    it('an update changes status and dates, keeps usage, windows, id and the stored start, and bumps the version', async () => {
      const { store, id, knex } = fx();
      const [user, group] = [id('u'), id('g')];
      const first = await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs, startsAtMs: ms('2024-03-01T00:00:00Z') });
      const charged = await store.settle(settlement({ requestId: id('r'), userId: user, groupId: group, mode: 'subscription', costUnits: usd('2.5') }));
      const renewed = await store.upsertSubscription({ userId: user, groupId: group, expiresAtMs: expiresAtMs + 30 * DAY });
      expect(renewed).to.deep.equal({ ...charged.subscription, version: 3, expiresAtMs: expiresAtMs + 30 * DAY });
      expect(renewed.subscriptionId).to.equal(first.subscriptionId);
      const [row] = await knex('billing_subscriptions').where({ user_id: user, group_id: group }).select('starts_at_ms');
      expect(Number(row.starts_at_ms)).to.equal(ms('2024-03-01T00:00:00Z'));
    });
  });

  describe('platform quota limits', () => {
    it('reads null without a row; a new row has the given limits, null for the others, zero usage and null starts', async () => {
      const { store, id } = fx();
      const user = id('u');
      expect(await store.getPlatformQuota(user, 'openai')).to.equal(null);
      const quota = await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('5') });
      const expected = {
        version: 1,
        sentinel: false,
        dailyLimit: usd('5'),
        weeklyLimit: null,
        monthlyLimit: null,
        dailyUsage: 0n,
        weeklyUsage: 0n,
        monthlyUsage: 0n,
        dailyStartMs: null,
        weeklyStartMs: null,
        monthlyStartMs: null,
      };
      expect(quota).to.deep.equal(expected);
      expect(await store.getPlatformQuota(user, 'openai')).to.deep.equal(expected);
      expect(await store.getPlatformQuota(user, 'anthropic')).to.equal(null);
    });

    it('an update sets only the limits it names (0 stays 0, null clears), keeps usage and bumps the version', async () => {
      const { store, id } = fx();
      const user = id('u');
      await store.topUp(user, usd('10'));
      await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('5'), weeklyLimit: usd('20'), monthlyLimit: usd('50') });
      await store.settle(settlement({ requestId: id('r'), userId: user, platform: 'openai', costUnits: usd('1.25') }));
      const updated = await store.setPlatformQuota(user, 'openai', { dailyLimit: 0n, weeklyLimit: null });
      expect(updated).to.deep.include({
        version: 3,
        dailyLimit: 0n,
        weeklyLimit: null,
        monthlyLimit: usd('50'),
        dailyUsage: usd('1.25'),
        monthlyUsage: usd('1.25'),
      });
      expect(updated.dailyStartMs).to.be.a('number');
      expect((await store.setPlatformQuota(user, 'openai', {})).version).to.equal(4);
    });
  });

  describe('RPM override', () => {
    it('is null until set; 0 is kept as 0 (exempt), null removes it; groups are independent', async () => {
      const { store, id } = fx();
      const [user, g1, g2] = [id('u'), id('g'), id('g')];
      expect(await store.getRpmOverride(user, g1)).to.equal(null);
      expect(await store.setRpmOverride(user, g1, 10)).to.equal(10);
      expect(await store.setRpmOverride(user, g2, 0)).to.equal(0);
      expect(await store.getRpmOverride(user, g1)).to.equal(10);
      expect(await store.getRpmOverride(user, g2)).to.equal(0);
      expect(await store.setRpmOverride(user, g1, 25)).to.equal(25);
      expect(await store.getRpmOverride(user, g1)).to.equal(25);
      expect(await store.setRpmOverride(user, g1, null)).to.equal(null);
      expect(await store.getRpmOverride(user, g1)).to.equal(null);
      expect(await store.setRpmOverride(user, g1, null)).to.equal(null);
      expect(await store.getRpmOverride(user, g2)).to.equal(0);
    });
  });

  describe('maintenance', () => {
    it('ping resolves', async () => {
      await fx().store.ping();
    });

    it('migrateBillingSchema run again changes nothing and keeps the data', async () => {
      const { store, id, knex } = fx();
      const user = id('u');
      await store.topUp(user, usd('3'));
      await migrateBillingSchema(knex);
      await migrateBillingSchema(knex);
      expect(await store.getBalance(user)).to.deep.equal({ version: 1, balance: usd('3') });
      const rows = await knex('billing_knex_migrations').select('name');
      expect(rows.map((r: { name: string }) => r.name)).to.deep.equal(['001-initial', '002-store-holds']);
    });
  });
}

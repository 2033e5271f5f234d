// Store contract: reservations held in the store while the cache is unreachable (docs/holds.md) —
// the cache's admission rule as guarded updates, all or nothing, released and expired exactly once.
import { expect } from 'chai';
import type { ReservationDimension, StoreHoldRequest } from '../../lib/types.js';
import { BillingValidationError } from '../../lib/validate.js';
import { at, settlement, usd, type GetFixture } from './store-fixtures.js';

const NOW = at('2024-03-06T12:00:00Z');
const TTL = 60_000;

const balanceDim = (userId: string): ReservationDimension => ({ name: 'bal', kind: 'balance', entity: { kind: 'balance', userId }, fallbackCapacity: 0n });
const quotaDim = (userId: string, limit: bigint): ReservationDimension => ({
  name: 'pq:openai:daily',
  kind: 'window',
  entity: { kind: 'platformQuota', userId, platform: 'openai' },
  window: 'daily',
  expiryThreshold: Date.parse('2024-03-06T00:00:00Z'),
  limit,
  fallbackUsed: 0n,
});
const keyDim = (userId: string, apiKeyId: string, limit: bigint): ReservationDimension => ({
  name: `key:${apiKeyId}:5h`,
  kind: 'window',
  entity: { kind: 'apiKeyWindows', userId, apiKeyId },
  window: '5h',
  expiryThreshold: NOW.nowMs - 5 * 3_600_000,
  limit,
  fallbackUsed: 0n,
});

export function holdContract(fx: GetFixture): void {
  let leases = 0;
  const hold = (userId: string, amount: string, dimensions: ReservationDimension[], fields: Partial<StoreHoldRequest> = {}) =>
    fx().store.holdInStore({ userId, leaseId: `store:l${++leases}-${userId}`, amount: usd(amount), ttlMs: TTL, nowMs: NOW.nowMs, dimensions, ...fields });

  it('holds against the balance net of other holds, all or nothing, and the rows say how much is held', async () => {
    const { store, id } = fx();
    const user = id('u');
    await store.setBalance(user, usd('1.00'));
    const first = await hold(user, '0.60', [balanceDim(user)]);
    expect(first).to.include({ outcome: 'reserved', expiresAtMs: NOW.nowMs + TTL });
    expect(first.outcome === 'reserved' && first.writes.map((w) => [w.ref.kind, (w.value as { held?: bigint }).held])).to.deep.equal([
      ['balance', usd('0.60')],
    ]);
    expect(await hold(user, '0.50', [balanceDim(user)])).to.deep.equal({ outcome: 'denied', dimension: 'bal', availableUnits: usd('0.40') });
    expect(await hold(user, '0.40', [balanceDim(user)])).to.include({ outcome: 'reserved' });
    expect(await store.getBalance(user)).to.deep.include({ balance: usd('1.00'), held: usd('1.00') });
    // Nothing left: even the smallest amount is refused.
    expect(await hold(user, '0.00000001', [balanceDim(user)])).to.include({ outcome: 'denied' });
    // An account that does not exist holds nothing.
    const ghost = id('ghost');
    expect(await hold(ghost, '0.01', [balanceDim(ghost)])).to.include({ outcome: 'denied', availableUnits: 0n });
  });

  it('a window hold counts the used window and other holds; a denied dimension leaves every row as it was', async () => {
    const { store, id } = fx();
    const user = id('u');
    await store.setBalance(user, usd('5'));
    await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('0.10') });
    await store.settle(settlement({ requestId: id('r'), userId: user, platform: 'openai', costUnits: usd('0.03'), time: NOW }));
    expect(await hold(user, '0.06', [balanceDim(user), quotaDim(user, usd('0.10'))])).to.include({ outcome: 'reserved' });
    const before = [await store.getBalance(user), await store.getPlatformQuota(user, 'openai')];
    // 0.03 used + 0.06 held + 0.02 > 0.10: refused, and the balance row (locked first) is not held either.
    expect(await hold(user, '0.02', [balanceDim(user), quotaDim(user, usd('0.10'))])).to.deep.equal({
      outcome: 'denied',
      dimension: 'pq:openai:daily',
      availableUnits: usd('0.01'),
    });
    expect([await store.getBalance(user), await store.getPlatformQuota(user, 'openai')]).to.deep.equal(before);
    expect(await hold(user, '0.01', [balanceDim(user), quotaDim(user, usd('0.10'))])).to.include({ outcome: 'reserved' });
    expect(await store.getPlatformQuota(user, 'openai')).to.deep.include({ dailyUsage: usd('0.03'), held: usd('0.07') });
  });

  it('a key never used gets a row to hold on; its windows count the hold', async () => {
    const { store, id } = fx();
    const user = id('u');
    const key = id('k');
    expect(await hold(user, '0.04', [keyDim(user, key, usd('0.05'))])).to.include({ outcome: 'reserved' });
    expect(await hold(user, '0.02', [keyDim(user, key, usd('0.05'))])).to.include({ outcome: 'denied' });
    expect(await store.getApiKeyWindows(user, key)).to.deep.include({ usage5h: 0n, held: usd('0.04'), version: 1 });
  });

  it('a release takes back exactly its amount, once; an unknown hold releases nothing', async () => {
    const { store, id } = fx();
    const user = id('u');
    await store.setBalance(user, usd('1'));
    await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('1') });
    const leaseId = `store:${id('lease')}`;
    await hold(user, '0.30', [balanceDim(user), quotaDim(user, usd('1'))], { leaseId });
    await hold(user, '0.20', [balanceDim(user)]);
    const writes = await store.releaseStoreHold(user, leaseId);
    expect(writes?.map((w) => w.ref.kind)).to.deep.equal(['balance', 'platformQuota']);
    expect(await store.getBalance(user)).to.deep.include({ held: usd('0.20') });
    expect(await store.getPlatformQuota(user, 'openai')).to.not.have.property('held');
    expect(await store.releaseStoreHold(user, leaseId)).to.equal(null, 'a second release is a no-op');
    expect(await store.releaseStoreHold(user, 'store:never-made')).to.equal(null);
    expect(await store.releaseStoreHold(id('other'), leaseId)).to.equal(null, 'another user cannot release it');
    expect(await store.getBalance(user)).to.deep.include({ held: usd('0.20') });
  });

  it('expired holds are taken back by the sweep, and before a new hold of the same user', async () => {
    const { store, id } = fx();
    const user = id('u');
    await store.setBalance(user, usd('1'));
    await hold(user, '0.70', [balanceDim(user)], { ttlMs: 1000 });
    expect(await hold(user, '0.50', [balanceDim(user)])).to.include({ outcome: 'denied' });
    // Past its expiry the same request fits: the expired hold is released in the same transaction.
    expect(await hold(user, '0.50', [balanceDim(user)], { nowMs: NOW.nowMs + 1000 })).to.include({ outcome: 'reserved' });
    expect(await store.getBalance(user)).to.deep.include({ held: usd('0.50') });

    const other = id('u');
    await store.setBalance(other, usd('1'));
    await hold(other, '0.25', [balanceDim(other)], { ttlMs: 5000 });
    await store.releaseExpiredStoreHolds(NOW.nowMs + 4999, 1000);
    expect(await store.getBalance(other)).to.deep.include({ held: usd('0.25') });
    const swept = await store.releaseExpiredStoreHolds(NOW.nowMs + 5000, 1000);
    expect(swept.some((w) => w.ref.kind === 'balance' && w.ref.userId === other)).to.equal(true);
    expect(await store.getBalance(other)).to.not.have.property('held');
  });

  it('a renewed hold outlives its first expiry; renewing one released or swept reports it and revives nothing', async () => {
    const { store, id } = fx();
    const user = id('u');
    await store.setBalance(user, usd('1'));
    const renewed = `store:renewed-${user}`;
    const released = `store:released-${user}`;
    const never = `store:never-${user}`;
    await hold(user, '0.40', [balanceDim(user)], { leaseId: renewed, ttlMs: 1000 });
    await hold(user, '0.30', [balanceDim(user)], { leaseId: released, ttlMs: 1000 });
    await store.releaseStoreHold!(user, released);
    expect(await store.renewStoreHolds!([renewed, released, never], NOW.nowMs + 10_000)).to.deep.equal([released, never]);
    // Renewal never shortens a hold.
    expect(await store.renewStoreHolds!([renewed], NOW.nowMs + 500)).to.deep.equal([]);
    await store.releaseExpiredStoreHolds(NOW.nowMs + 9999, 1000);
    expect(await store.getBalance(user)).to.deep.include({ held: usd('0.40') });
    await store.releaseExpiredStoreHolds(NOW.nowMs + 10_000, 1000);
    expect(await store.getBalance(user)).to.not.have.property('held');
    expect(await store.renewStoreHolds!([renewed], NOW.nowMs + 20_000)).to.deep.equal([renewed]);
  });

  it('a hold whose row cannot be read is left in place: it stops neither the sweep nor new holds of its user', async () => {
    const { store, id, knex } = fx();
    const user = id('u');
    await store.setBalance(user, usd('1'));
    const poisoned = `store:${id('poison')}`;
    await hold(user, '0.10', [balanceDim(user)], { leaseId: poisoned, ttlMs: 1000 });
    await hold(user, '0.20', [balanceDim(user)], { ttlMs: 1000 });
    await knex('billing_store_holds').where({ id: poisoned }).update({ targets: 'not json' });
    await store.releaseExpiredStoreHolds(NOW.nowMs + 1000, 1);
    expect(await store.getBalance(user)).to.deep.include({ held: usd('0.10') }, 'the readable one was taken back, the other keeps counting');
    expect(await hold(user, '0.90', [balanceDim(user)], { nowMs: NOW.nowMs + 2000 })).to.include({ outcome: 'reserved' });
    expect(await knex('billing_store_holds').where({ id: poisoned }).first('id')).to.deep.equal({ id: poisoned });
  });

  it('refuses malformed holds before any SQL, naming the field', async () => {
    const { id } = fx();
    const user = id('u');
    const bad: [string, Partial<StoreHoldRequest>][] = [
      ['dimension.entity', { dimensions: [balanceDim('someone-else')] }],
      ['amount', { amount: 0n }],
      ['holdId', { leaseId: 'has space' }],
      ['dimensions', { dimensions: [] }],
      ['ttlMs', { ttlMs: 0 }],
    ];
    for (const [field, fields] of bad) {
      const err = await hold(user, '0.01', [balanceDim(user)], fields).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, field).to.be.instanceOf(BillingValidationError);
      expect((err as BillingValidationError).field, field).to.equal(field);
    }
  });
}

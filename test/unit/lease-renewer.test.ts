// Unit tests for lib/lease-renewer.ts: one renewal call per user (chunked), store holds in one call,
// lost holds dropped and reported once, a release racing its renewal not reported, nothing after close.
import { expect } from 'chai';
import { systemClock } from '../../lib/clock.js';
import { LeaseRenewer } from '../../lib/lease-renewer.js';
import { ThrottledLog } from '../../lib/log.js';
import type { BillingStore, ReservationCache } from '../../lib/types.js';

function setup(lostInCache: (ids: readonly string[]) => string[] = () => []) {
  const cacheCalls: { userId: string; ids: string[]; ttlMs: number }[] = [];
  const storeCalls: { ids: string[]; expiresAtMs: number }[] = [];
  const warnings: object[] = [];
  const cache = {
    renew: async (userId: string, ids: readonly string[], ttlMs: number) => {
      cacheCalls.push({ userId, ids: [...ids], ttlMs });
      return lostInCache(ids);
    },
  } as unknown as ReservationCache;
  const store = {
    renewStoreHolds: async (ids: readonly string[], expiresAtMs: number) => {
      storeCalls.push({ ids: [...ids], expiresAtMs });
      return ids.filter((id) => id.endsWith('gone'));
    },
  } as unknown as BillingStore;
  const logger = { debug() {}, info() {}, warn: (obj: object) => void warnings.push(obj), error() {} };
  const renewer = new LeaseRenewer({ cache, store, ttlMs: 30_000, clock: systemClock, warnings: new ThrottledLog(logger, systemClock, 0) });
  return { renewer, cacheCalls, storeCalls, warnings };
}

describe('LeaseRenewer', () => {
  it('renews every third of the TTL, one cache call per user, store holds together in one call', async () => {
    const { renewer, cacheCalls, storeCalls } = setup();
    expect(renewer.intervalMs).to.equal(10_000);
    renewer.track('u1', 'a');
    renewer.track('u1', 'b');
    renewer.track('u2', 'c');
    renewer.track('u1', 'store:d');
    renewer.track('u2', 'store:e');
    await renewer.renewNow();
    expect(cacheCalls).to.deep.equal([
      { userId: 'u1', ids: ['a', 'b'], ttlMs: 30_000 },
      { userId: 'u2', ids: ['c'], ttlMs: 30_000 },
    ]);
    expect(storeCalls.map((c) => c.ids)).to.deep.equal([['store:d', 'store:e']]);
    expect(storeCalls[0]!.expiresAtMs).to.be.closeTo(Date.now() + 30_000, 1000);
    renewer.close();
  });

  it('sends at most 1,000 ids per call', async () => {
    const { renewer, cacheCalls } = setup();
    for (let i = 0; i < 2500; i++) renewer.track('u1', `l${i}`);
    await renewer.renewNow();
    expect(cacheCalls.map((c) => c.ids.length)).to.deep.equal([1000, 1000, 500]);
    renewer.close();
  });

  it('drops lost holds and reports them; a hold released while its renewal was on the way is not reported', async () => {
    const { renewer, cacheCalls, warnings } = setup((ids) => ids.filter((id) => id.startsWith('lost') || id === 'released'));
    renewer.track('u1', 'kept');
    renewer.track('u1', 'lost-1');
    renewer.track('u1', 'released');
    renewer.track('u1', 'store:x-gone');
    const renewal = renewer.renewNow();
    renewer.untrack('u1', 'released');
    await renewal;
    expect(warnings.map((w) => (w as { count: number }).count)).to.have.members([1, 1]);
    expect(renewer.size).to.equal(1);
    await renewer.renewNow();
    expect(cacheCalls.at(-1)!.ids).to.deep.equal(['kept']);
    renewer.close();
  });

  it('stops when nothing is tracked and after close', async () => {
    const { renewer, cacheCalls } = setup();
    renewer.track('u1', 'a');
    expect(renewer.untrack('u1', 'a')).to.equal(true);
    expect(renewer.untrack('u1', 'a')).to.equal(false);
    renewer.close();
    renewer.track('u1', 'b');
    await renewer.renewNow();
    expect(cacheCalls).to.deep.equal([]);
  });
});

// Contract part: reservation leases (docs/holds.md) — all or nothing across dimensions, open leases counted,
// live cached usage read atomically, release, expiry on the cache's clock, one round trip.
import { expect } from 'chai';
import type { ReservationDimension, ReserveRequest } from '../../lib/types.js';
import type { ContractContext } from './cache-contract.js';
import { freshUserId } from './cache-fixtures.js';

const MINUTE = 60_000;

function balanceDim(userId: string, capacity: bigint): ReservationDimension {
  return { name: 'bal', kind: 'balance', entity: { kind: 'balance', userId }, fallbackCapacity: capacity };
}

function keyDim(userId: string, limit: bigint, used: bigint, threshold = 0): ReservationDimension {
  return {
    name: 'key:k1:5h',
    kind: 'window',
    entity: { kind: 'apiKeyWindows', userId, apiKeyId: 'k1' },
    window: '5h',
    expiryThreshold: threshold,
    limit,
    fallbackUsed: used,
  };
}

export function leaseContract(ctx: ContractContext): void {
  const reserve = (request: Partial<ReserveRequest> & Pick<ReserveRequest, 'userId' | 'dimensions'>) =>
    ctx.cache.reserve({ leaseId: `l-${Math.random().toString(36).slice(2)}`, amount: 100n, ttlMs: 10 * MINUTE, ...request });

  describe('reservation leases', function () {
    it('admits while used + open leases + amount fit, then denies naming the dimension', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 1000n)];
      for (let i = 0; i < 4; i++) expect((await reserve({ userId, amount: 250n, dimensions: dims })).outcome).to.equal('reserved');
      const denied = await reserve({ userId, amount: 1n, dimensions: dims });
      expect(denied).to.deep.equal({ outcome: 'denied', dimension: 'bal', availableUnits: 0n });
      expect(await ctx.cache.listLeases(userId)).to.have.length(4);
    });

    it('is all or nothing: a full second dimension holds nothing on the first', async function () {
      const userId = freshUserId();
      const denied = await reserve({ userId, amount: 60n, dimensions: [balanceDim(userId, 1000n), keyDim(userId, 100n, 50n)] });
      expect(denied).to.deep.equal({ outcome: 'denied', dimension: 'key:k1:5h', availableUnits: 50n });
      expect(await ctx.cache.listLeases(userId)).to.deep.equal([]);
      expect((await reserve({ userId, amount: 50n, dimensions: [balanceDim(userId, 1000n), keyDim(userId, 100n, 50n)] })).outcome).to.equal('reserved');
    });

    it('reads capacity and usage from the live cached entity, not the caller’s fallback', async function () {
      const userId = freshUserId();
      await ctx.cache.put({ kind: 'balance', userId }, { version: 3, balance: 500n });
      const stale = await reserve({ userId, amount: 600n, dimensions: [balanceDim(userId, 10_000n)] });
      expect(stale).to.include({ outcome: 'denied', dimension: 'bal' });
      const now = ctx.target.clock?.now() ?? Date.now();
      await ctx.cache.put(
        { kind: 'apiKeyWindows', userId, apiKeyId: 'k1' },
        {
          version: 1,
          usage5h: 90n,
          usage1d: 0n,
          usage7d: 0n,
          start5hMs: now - 1000,
          start1dMs: null,
          start7dMs: null,
        },
      );
      expect(await reserve({ userId, amount: 20n, dimensions: [keyDim(userId, 100n, 0n, now - 5 * 3_600_000)] })).to.include({ outcome: 'denied' });
      // The same cached usage in a window that has expired (start < threshold) counts 0.
      expect(await reserve({ userId, amount: 20n, dimensions: [keyDim(userId, 100n, 0n, now)] })).to.include({ outcome: 'reserved' });
    });

    it('counts the store holds a cached entity carries: off the balance, into every window of the row, expired ones too', async function () {
      const userId = freshUserId();
      await ctx.cache.put({ kind: 'balance', userId }, { version: 2, balance: 1000n, held: 600n });
      const read = await ctx.cache.readBatch({ userId, balance: true });
      expect(read.balance).to.deep.equal({ hit: true, value: { version: 2, balance: 1000n, held: 600n } });
      expect(await reserve({ userId, amount: 401n, dimensions: [balanceDim(userId, 10_000n)] })).to.deep.equal({
        outcome: 'denied',
        dimension: 'bal',
        availableUnits: 400n,
      });
      expect(await reserve({ userId, amount: 400n, dimensions: [balanceDim(userId, 10_000n)] })).to.include({ outcome: 'reserved' });
      const now = ctx.target.clock?.now() ?? Date.now();
      await ctx.cache.put(
        { kind: 'apiKeyWindows', userId, apiKeyId: 'k1' },
        {
          version: 1,
          usage5h: 30n,
          usage1d: 0n,
          usage7d: 0n,
          start5hMs: now - 1000,
          start1dMs: null,
          start7dMs: null,
          held: 50n,
        },
      );
      expect(await reserve({ userId, amount: 21n, dimensions: [keyDim(userId, 100n, 0n, now - 5 * 3_600_000)] })).to.include({
        outcome: 'denied',
        availableUnits: 20n,
      });
      // The window has expired, its usage counts 0, the hold still counts.
      expect(await reserve({ userId, amount: 51n, dimensions: [keyDim(userId, 100n, 0n, now)] })).to.include({ outcome: 'denied', availableUnits: 50n });
      expect(await reserve({ userId, amount: 50n, dimensions: [keyDim(userId, 100n, 0n, now)] })).to.include({ outcome: 'reserved' });
    });

    it('an entity without store holds reads back without the property and can reserve its whole balance', async function () {
      const userId = freshUserId();
      await ctx.cache.put({ kind: 'balance', userId }, { version: 2, balance: 1000n });
      const read = await ctx.cache.readBatch({ userId, balance: true });
      expect(read.balance).to.deep.equal({ hit: true, value: { version: 2, balance: 1000n } });
      expect(await reserve({ userId, amount: 1000n, dimensions: [balanceDim(userId, 0n)] })).to.include({ outcome: 'reserved' });
    });

    it('falls back to the caller’s values when the entity is not cached (or is a tombstone)', async function () {
      const userId = freshUserId();
      await ctx.cache.invalidate({ kind: 'balance', userId });
      expect(await reserve({ userId, amount: 300n, dimensions: [balanceDim(userId, 299n)] })).to.include({ outcome: 'denied' });
      expect(await reserve({ userId, amount: 299n, dimensions: [balanceDim(userId, 299n)] })).to.include({ outcome: 'reserved' });
    });

    it('release frees the amount at once, exactly once', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 100n)];
      expect(await reserve({ userId, leaseId: 'a', amount: 100n, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, amount: 1n, dimensions: dims })).to.include({ outcome: 'denied' });
      expect(await ctx.cache.release(userId, 'a')).to.equal(true);
      expect(await ctx.cache.release(userId, 'a')).to.equal(false);
      expect(await reserve({ userId, amount: 100n, dimensions: dims })).to.include({ outcome: 'reserved' });
    });

    it('an expired lease stops counting (a crashed process’s leases end at their TTL)', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 100n)];
      const ttlMs = ctx.target.clock ? 10 * MINUTE : 300;
      expect(await reserve({ userId, amount: 100n, ttlMs, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, amount: 1n, dimensions: dims })).to.include({ outcome: 'denied' });
      if (ctx.target.clock) ctx.target.clock.advance(ttlMs);
      else await new Promise((resolve) => setTimeout(resolve, ttlMs + 50));
      expect(await ctx.cache.listLeases(userId)).to.deep.equal([]);
      expect(await reserve({ userId, amount: 100n, dimensions: dims })).to.include({ outcome: 'reserved' });
    });

    it('re-reserving the same lease id replaces it instead of counting it twice', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 100n)];
      expect(await reserve({ userId, leaseId: 'same', amount: 80n, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, leaseId: 'same', amount: 90n, dimensions: dims })).to.include({ outcome: 'reserved' });
      const leases = await ctx.cache.listLeases(userId);
      expect(leases.map((l) => [l.leaseId, l.amount, l.dimensions])).to.deep.equal([['same', 90n, ['bal']]]);
    });

    it('rejects malformed requests before they reach the cache', async function () {
      const userId = freshUserId();
      for (const bad of [{ leaseId: 'a b' }, { amount: 0n }, { ttlMs: 0 }]) {
        let error: unknown;
        try {
          await reserve({ userId, dimensions: [balanceDim(userId, 10n)], ...bad });
        } catch (err) {
          error = err;
        }
        expect(error, JSON.stringify(Object.keys(bad))).to.be.instanceOf(Error);
      }
    });

    it('a reservation is one round trip', async function () {
      if (!ctx.target.countCommands) this.skip(); // the memory cache makes no round trips at all
      const userId = freshUserId();
      const commands = await ctx.target.countCommands(ctx.cache, () => reserve({ userId, dimensions: [balanceDim(userId, 1000n), keyDim(userId, 1000n, 0n)] }));
      expect(commands).to.equal(1);
    });
  });
}

// Contract part: the lease book in constant time — thousands of open leases, expiry before any sweep,
// renewal, double release and release after expiry, concurrency slots, growing a hold in place, shadow dimensions, a book whose
// totals were lost, and a random search against a naive model of open leases.
import { expect } from 'chai';
import fc from 'fast-check';
import type { ReservationDimension, ReserveRequest, SlotDimension } from '../../lib/types.js';
import type { ContractContext } from './cache-contract.js';
import { freshUserId } from './cache-fixtures.js';

const MINUTE = 60_000;

const balanceDim = (userId: string, capacity: bigint): ReservationDimension => ({
  name: 'bal',
  kind: 'balance',
  entity: { kind: 'balance', userId },
  fallbackCapacity: capacity,
});

const userSlot = (limit: number): SlotDimension => ({ name: 'cc:u', limit });

export function leaseBookContract(ctx: ContractContext): void {
  let sequence = 0;
  const reserve = (request: Partial<ReserveRequest> & Pick<ReserveRequest, 'userId'>) =>
    ctx.cache.reserve({ leaseId: `lb-${sequence++}`, amount: 1n, ttlMs: 10 * MINUTE, dimensions: [], ...request });
  /** Waits (Redis) or moves the clock (memory) past `ms`. */
  const pass = async (ms: number) => {
    if (ctx.target.clock) ctx.target.clock.advance(ms);
    else await new Promise((resolve) => setTimeout(resolve, ms));
  };

  describe('lease book (constant time)', function () {
    it('admits exactly up to the capacity with thousands of leases open, and a release frees exactly its own', async function () {
      this.timeout(30_000);
      const userId = freshUserId();
      const dims = [balanceDim(userId, 3000n)];
      const opened = await Promise.all(Array.from({ length: 3000 }, (_, i) => reserve({ userId, leaseId: `many-${i}`, dimensions: dims })));
      expect(opened.every((r) => r.outcome === 'reserved')).to.equal(true);
      expect(await reserve({ userId, dimensions: dims })).to.deep.equal({ outcome: 'denied', dimension: 'bal', availableUnits: 0n });
      expect(await ctx.cache.release(userId, 'many-17')).to.equal(true);
      expect(await reserve({ userId, amount: 2n, dimensions: dims })).to.include({ outcome: 'denied', availableUnits: 1n });
      expect(await reserve({ userId, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await ctx.cache.listLeases(userId)).to.have.length(3000);
    });

    it('a reserve does the same work with 2,000 leases open as with none: it never reads the open leases', async function () {
      if (!ctx.target.scriptedCommands) this.skip(); // the memory cache runs no scripts to count
      this.timeout(30_000);
      const idle = freshUserId();
      const busy = freshUserId();
      const dims = (userId: string) => [balanceDim(userId, 1_000_000n)];
      await Promise.all(Array.from({ length: 2000 }, (_, i) => reserve({ userId: busy, leaseId: `open-${i}`, dimensions: dims(busy) })));
      const work = async (userId: string) =>
        (await ctx.target.scriptedCommands!(() => reserve({ userId, dimensions: dims(userId) }))).map((c) => c[0]!.toLowerCase());
      const none = await work(idle);
      const many = await work(busy);
      // The first reserve of a user reads no lease; the busy one must not read 2,000 either.
      expect(many).to.not.include('hgetall');
      expect(many.length, many.join(' ')).to.be.at.most(none.length + 2);
      const release = (await ctx.target.scriptedCommands!(() => ctx.cache.release(busy, 'open-5'))).length;
      expect(release).to.be.below(20);
    });

    it('an expired lease stops counting at its expiry, before anything sweeps it, and only expired ones stop', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 100n)];
      const shortMs = ctx.target.clock ? MINUTE : 400;
      expect(await reserve({ userId, leaseId: 'short', amount: 60n, ttlMs: shortMs, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, leaseId: 'long', amount: 40n, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, dimensions: dims })).to.include({ outcome: 'denied', availableUnits: 0n });
      await pass(shortMs + 50);
      expect(await reserve({ userId, amount: 61n, dimensions: dims })).to.include({ outcome: 'denied', availableUnits: 60n });
      expect((await ctx.cache.listLeases(userId)).map((l) => l.leaseId)).to.deep.equal(['long']);
    });

    it('release twice, or after expiry, gives nothing back a second time', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 100n)];
      const shortMs = ctx.target.clock ? MINUTE : 300;
      expect(await reserve({ userId, leaseId: 'gone', amount: 50n, ttlMs: shortMs, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, leaseId: 'kept', amount: 50n, dimensions: dims })).to.include({ outcome: 'reserved' });
      await pass(shortMs + 50);
      expect(await ctx.cache.release(userId, 'gone')).to.equal(false);
      expect(await ctx.cache.release(userId, 'gone')).to.equal(false);
      expect(await ctx.cache.release(userId, 'never')).to.equal(false);
      // Only the expired 50 came back: 'kept' still holds its 50.
      expect(await reserve({ userId, amount: 51n, dimensions: dims })).to.include({ outcome: 'denied', availableUnits: 50n });
      expect(await ctx.cache.release(userId, 'kept')).to.equal(true);
      expect(await ctx.cache.release(userId, 'kept')).to.equal(false);
      expect(await reserve({ userId, amount: 100n, dimensions: dims })).to.include({ outcome: 'reserved' });
    });

    it('renewal keeps a lease counting past its first TTL; an expired or released one is reported lost and not revived', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 100n)];
      const ttlMs = ctx.target.clock ? MINUTE : 600;
      expect(await reserve({ userId, leaseId: 'live', amount: 70n, ttlMs, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, leaseId: 'dead', amount: 30n, ttlMs, dimensions: dims })).to.include({ outcome: 'reserved' });
      expect(await ctx.cache.release(userId, 'dead')).to.equal(true);
      for (let i = 0; i < 4; i++) {
        await pass(ttlMs / 2);
        expect(await ctx.cache.renew(userId, ['live', 'dead', 'unknown'], ttlMs)).to.deep.equal(['dead', 'unknown']);
      }
      // Two full TTLs later 'live' still holds its 70.
      expect(await reserve({ userId, amount: 31n, dimensions: dims })).to.include({ outcome: 'denied', availableUnits: 30n });
      await pass(ttlMs + 50);
      expect(await ctx.cache.renew(userId, ['live'], ttlMs)).to.deep.equal(['live']);
      expect(await reserve({ userId, amount: 100n, dimensions: dims })).to.include({ outcome: 'reserved' });
    });

    it('a slot admits up to its limit, counts its holders, refuses the next naming it, and frees on release', async function () {
      const userId = freshUserId();
      const a = await reserve({ userId, leaseId: 's1', amount: 0n, slots: [userSlot(2)] });
      const b = await reserve({ userId, leaseId: 's2', amount: 0n, slots: [userSlot(2)] });
      expect([a, b].map((r) => r.outcome === 'reserved' && r.slotsInUse)).to.deep.equal([[1], [2]]);
      expect(await reserve({ userId, amount: 0n, slots: [userSlot(2)] })).to.deep.equal({ outcome: 'denied', dimension: 'cc:u', availableUnits: 0n });
      expect(await ctx.cache.release(userId, 's1')).to.equal(true);
      expect(await reserve({ userId, amount: 0n, slots: [userSlot(2)] })).to.deep.include({ outcome: 'reserved', slotsInUse: [2] });
      expect((await ctx.cache.listLeases(userId)).every((l) => l.slots.join() === 'cc:u')).to.equal(true);
    });

    it('slots and money are one all-or-nothing step: a full slot holds no money, a full balance takes no slot', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 100n)];
      expect(await reserve({ userId, amount: 10n, dimensions: dims, slots: [userSlot(1)] })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, amount: 10n, dimensions: dims, slots: [userSlot(1)] })).to.include({ outcome: 'denied', dimension: 'cc:u' });
      expect(await reserve({ userId, amount: 91n, dimensions: dims, slots: [userSlot(5)] })).to.include({ outcome: 'denied', dimension: 'bal' });
      // Neither refusal held anything: 90 left on the balance, one holder of the slot.
      expect(await reserve({ userId, amount: 90n, dimensions: dims, slots: [userSlot(2)] })).to.deep.include({ outcome: 'reserved', slotsInUse: [2] });
    });

    it('an unenforced dimension or slot (shadow mode) never refuses, and the reply names the first that would have (slots are checked first)', async function () {
      const userId = freshUserId();
      const dims = [balanceDim(userId, 10n)];
      const unenforced = new Set(['bal', 'cc:u']);
      expect(await reserve({ userId, amount: 10n, dimensions: dims, slots: [userSlot(1)], unenforced })).to.deep.include({
        outcome: 'reserved',
        over: undefined,
      });
      expect(await reserve({ userId, amount: 10n, dimensions: dims, slots: [userSlot(1)], unenforced })).to.deep.include({
        outcome: 'reserved',
        over: 'cc:u',
        slotsInUse: [2],
      });
      expect(await reserve({ userId, amount: 1n, dimensions: dims, slots: [userSlot(5)], unenforced: new Set(['cc:u']) })).to.include({
        outcome: 'denied',
        dimension: 'bal',
      });
    });

    it('a hold grows in place (replaceOnly): all or nothing against every dimension, its slot kept, never reviving a lease that ended', async function () {
      const userId = freshUserId();
      const window: ReservationDimension = {
        name: 'key:k:5h',
        kind: 'window',
        entity: { kind: 'apiKeyWindows', userId, apiKeyId: 'k' },
        window: '5h',
        expiryThreshold: 0,
        limit: 80n,
        fallbackUsed: 0n,
      };
      const dims = [balanceDim(userId, 100n), window];
      const slots = [userSlot(2)];
      // A hold grows against the rows as they are cached now, never its admission's fallbacks.
      await ctx.cache.put({ kind: 'balance', userId }, { version: 1, balance: 100n });
      await ctx.cache.put(window.entity, { version: 1, usage5h: 0n, usage1d: 0n, usage7d: 0n, start5hMs: null, start1dMs: null, start7dMs: null });
      expect(await reserve({ userId, leaseId: 'stream', amount: 30n, dimensions: dims, slots })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, leaseId: 'other', amount: 10n, dimensions: [dims[0]!] })).to.include({ outcome: 'reserved' });
      const grow = (amount: bigint, leaseId = 'stream') => reserve({ userId, leaseId, amount, dimensions: dims, slots, replaceOnly: true });
      // 30 → 70: the balance has 100 − 10 (other) − 30 (own, replaced) = 60 more, the window 80 − 30 = 50 more.
      expect(await grow(70n)).to.deep.include({ outcome: 'reserved', slotsInUse: [1] });
      // 70 → 85 passes the window (80): refused by it, naming it and the most the whole hold may be, and the hold keeps its 70.
      expect(await grow(85n)).to.deep.equal({ outcome: 'denied', dimension: 'key:k:5h', availableUnits: 80n });
      expect((await ctx.cache.listLeases(userId)).find((l) => l.leaseId === 'stream')?.amount).to.equal(70n);
      expect(await reserve({ userId, amount: 21n, dimensions: [dims[0]!] })).to.include({ outcome: 'denied', availableUnits: 20n });
      // Still one holder of the slot, and one more request may take the second.
      expect(await reserve({ userId, amount: 0n, dimensions: [], slots })).to.deep.include({ outcome: 'reserved', slotsInUse: [2] });
      // Others now hold the cap's two slots with this one (a cap lowered since): the hold still grows, keeping its slot.
      expect(await reserve({ userId, amount: 0n, dimensions: [], slots: [userSlot(3)] })).to.deep.include({ outcome: 'reserved', slotsInUse: [3] });
      expect(await grow(71n)).to.deep.include({ outcome: 'reserved', slotsInUse: [3] });
      // A row no longer cached (invalidated, evicted): the hold cannot be checked, so it does not grow.
      await ctx.cache.invalidate(window.entity);
      expect(await grow(72n)).to.deep.equal({ outcome: 'stale', dimension: 'key:k:5h' });
      expect((await ctx.cache.listLeases(userId)).find((l) => l.leaseId === 'stream')?.amount).to.equal(71n);
      // Released, unknown or expired: nothing to grow, and nothing is held for it.
      expect(await ctx.cache.release(userId, 'stream')).to.equal(true);
      expect(await grow(10n)).to.deep.equal({ outcome: 'gone' });
      expect(await grow(10n, 'never-taken')).to.deep.equal({ outcome: 'gone' });
      expect((await ctx.cache.listLeases(userId)).map((l) => l.leaseId)).to.not.include.members(['stream', 'never-taken']);
      const shortMs = ctx.target.clock ? MINUTE : 300;
      expect(await reserve({ userId, leaseId: 'brief', amount: 5n, ttlMs: shortMs, dimensions: [dims[0]!] })).to.include({ outcome: 'reserved' });
      await pass(shortMs + 50);
      expect(await reserve({ userId, leaseId: 'brief', amount: 6n, dimensions: [dims[0]!], replaceOnly: true })).to.deep.equal({ outcome: 'gone' });
    });

    it('a book whose totals were lost or corrupted is rebuilt from its leases, so holds still count exactly', async function () {
      if (!ctx.target.scriptedCommands) this.skip(); // the memory cache keeps its totals out of reach of stored data
      const userId = freshUserId();
      const dims = [balanceDim(userId, 100n)];
      expect(await reserve({ userId, leaseId: 'r1', amount: 30n, dimensions: dims, slots: [userSlot(3)] })).to.include({ outcome: 'reserved' });
      expect(await reserve({ userId, leaseId: 'r2', amount: 30n, dimensions: dims, slots: [userSlot(3)] })).to.include({ outcome: 'reserved' });
      const [, totalsKey] = ctx.cache.keys.leaseBook(userId);
      await ctx.raw.write(totalsKey, { bal: '1', '#n': '7' });
      expect(await reserve({ userId, amount: 41n, dimensions: dims })).to.include({ outcome: 'denied', availableUnits: 40n });
      expect(await reserve({ userId, leaseId: 'r3', amount: 10n, dimensions: dims, slots: [userSlot(3)] })).to.deep.include({
        outcome: 'reserved',
        slotsInUse: [3],
      });
      expect(await ctx.cache.release(userId, 'r1')).to.equal(true);
      expect(await reserve({ userId, amount: 61n, dimensions: dims })).to.include({ outcome: 'denied', availableUnits: 60n });
    });

    it('random reserve / grow / release / renew / expiry sequences hold exactly what a naive list of open leases holds', async function () {
      this.timeout(120_000);
      const capacity = 100n;
      const SLOT_LIMIT = 3;
      type Op =
        | { op: 'reserve'; amount: number; slot: boolean }
        | { op: 'release' | 'renew'; pick: number }
        | { op: 'grow'; pick: number; extra: number }
        | { op: 'advance'; ms: number };
      const ops = fc.array(
        fc.oneof(
          fc.record({ op: fc.constant('reserve' as const), amount: fc.integer({ min: 1, max: 40 }), slot: fc.boolean() }),
          fc.record({ op: fc.constantFrom('release' as const, 'renew' as const), pick: fc.nat() }),
          fc.record({ op: fc.constant('grow' as const), pick: fc.nat(), extra: fc.integer({ min: 1, max: 40 }) }),
          // Time moves only where the test controls the clock.
          ...(ctx.target.clock ? [fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 2 * MINUTE }) })] : []),
        ),
        { maxLength: 40 },
      );
      await fc.assert(
        fc.asyncProperty(ops, async (sequence: Op[]) => {
          const userId = freshUserId();
          const dims = [balanceDim(userId, capacity)];
          // Cached, as a growing hold needs its rows to be (a long put TTL: it outlives the clock moves).
          await ctx.cache.put({ kind: 'balance', userId }, { version: 1, balance: capacity });
          let nowMs = 0;
          const ttlMs = MINUTE;
          const model = new Map<string, { amount: bigint; slot: boolean; expiresAtMs: number }>();
          const live = () => [...model].filter(([, lease]) => lease.expiresAtMs > nowMs);
          let n = 0;
          for (const step of sequence) {
            if (step.op === 'advance') {
              ctx.target.clock!.advance(step.ms);
              nowMs += step.ms;
            } else if (step.op === 'reserve') {
              const open = live();
              const held = open.reduce((sum, [, lease]) => sum + lease.amount, 0n);
              const holders = open.filter(([, lease]) => lease.slot).length;
              const leaseId = `m${n++}`;
              const result = await reserve({
                userId,
                leaseId,
                amount: BigInt(step.amount),
                ttlMs,
                dimensions: dims,
                slots: step.slot ? [userSlot(SLOT_LIMIT)] : [],
              });
              const fits = held + BigInt(step.amount) <= capacity && (!step.slot || holders < SLOT_LIMIT);
              expect(result.outcome, `reserve ${step.amount} with ${held} held, ${holders} holders`).to.equal(fits ? 'reserved' : 'denied');
              if (fits) model.set(leaseId, { amount: BigInt(step.amount), slot: step.slot, expiresAtMs: nowMs + ttlMs });
            } else {
              const ids = [...model.keys()];
              if (ids.length === 0) continue;
              const leaseId = ids[step.pick % ids.length]!;
              const lease = model.get(leaseId)!;
              const open = lease.expiresAtMs > nowMs;
              if (step.op === 'grow') {
                // A hold grown in place: the same dimensions and slot, a bigger amount, never reviving one that ended.
                const heldByOthers = live().reduce((sum, [id, other]) => (id === leaseId ? sum : sum + other.amount), 0n);
                const amount = lease.amount + BigInt(step.extra);
                const result = await reserve({
                  userId,
                  leaseId,
                  amount,
                  ttlMs,
                  dimensions: dims,
                  slots: lease.slot ? [userSlot(SLOT_LIMIT)] : [],
                  replaceOnly: true,
                });
                const expected = !open ? 'gone' : heldByOthers + amount <= capacity ? 'reserved' : 'denied';
                expect(result.outcome, `grow ${leaseId} to ${amount} with ${heldByOthers} held by others`).to.equal(expected);
                if (expected === 'reserved') model.set(leaseId, { ...lease, amount, expiresAtMs: nowMs + ttlMs });
                if (expected === 'gone') model.delete(leaseId);
                continue;
              }
              if (step.op === 'release') {
                expect(await ctx.cache.release(userId, leaseId)).to.equal(open);
                model.delete(leaseId);
              } else {
                expect(await ctx.cache.renew(userId, [leaseId], ttlMs)).to.deep.equal(open ? [] : [leaseId]);
                if (open) model.get(leaseId)!.expiresAtMs = nowMs + ttlMs;
              }
            }
          }
          const listed = (await ctx.cache.listLeases(userId)).map((l) => `${l.leaseId}=${l.amount}`).sort();
          expect(listed).to.deep.equal(
            live()
              .map(([id, lease]) => `${id}=${lease.amount}`)
              .sort(),
          );
        }),
        { numRuns: ctx.target.clock ? 100 : 25 },
      );
    });
  });
}

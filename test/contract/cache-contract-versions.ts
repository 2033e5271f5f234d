// Contract part: versioned writes, generations and invalidation (docs/behaviour.md#cache-consistency, docs/behaviour.md#invalidation), the batched read and
// its single round trip.
import { expect } from 'chai';
import type { CacheEntityKind } from '../../lib/types.js';
import type { ContractContext } from './cache-contract.js';
import { ALL_KINDS, balanceCase, freshUserId, fullBatch, platformQuotaCase, rpmOverrideCase, sentinelQuota, type KindCase } from './cache-fixtures.js';

export function versionContract(ctx: ContractContext): void {
  describe('versions and generations', function () {
    for (const kind of ALL_KINDS) {
      describe(kind.kind, function () {
        versionCases(ctx, kind);
      });
    }

    it('caches the answer "no override" as well as an override', async function () {
      const userId = freshUserId();
      const ref = rpmOverrideCase.ref(userId);
      expect(await ctx.cache.fill(ref, { version: 1, value: null }, 0)).to.equal(true);
      expect((await ctx.cache.readBatch(rpmOverrideCase.batch(userId))).rpmOverride).to.deep.equal({ hit: true, value: { version: 1, value: null } });
      expect(await ctx.cache.put(ref, { version: 2, value: 0 })).to.equal(true);
      expect((await ctx.cache.readBatch(rpmOverrideCase.batch(userId))).rpmOverride).to.deep.equal({ hit: true, value: { version: 2, value: 0 } });
    });

    it('replaces a sentinel quota entry with a real row and back, without leftover fields', async function () {
      const userId = freshUserId();
      const ref = platformQuotaCase.ref(userId);
      expect(await ctx.cache.fill(ref, sentinelQuota(0), 0)).to.equal(true);
      expect((await ctx.cache.readBatch(platformQuotaCase.batch(userId))).platformQuota).to.deep.equal({ hit: true, value: sentinelQuota(0) });
      const row = platformQuotaCase.value(1, 1);
      expect(await ctx.cache.put(ref, row)).to.equal(true);
      expect((await ctx.cache.readBatch(platformQuotaCase.batch(userId))).platformQuota).to.deep.equal({ hit: true, value: row });
    });

    it('refuses values it could not read back, naming the property', async function () {
      const ref = balanceCase.ref(freshUserId());
      await expectRejection(ctx.cache.put(ref, { version: 1, balance: 2n ** 60n }), /balance\.balance/);
      await expectRejection(ctx.cache.put(ref, { version: -1, balance: 1n }), /balance\.version/);
      await expectRejection(ctx.cache.fill(ref, { version: 1, balance: 1n }, -1), /generation/);
      expect((await ctx.cache.readBatch(balanceCase.batch(ref.userId))).balance).to.deep.equal({ hit: false, generation: 0 });
    });
  });

  describe('the batched read', function () {
    it('reads every requested entity, each hit or miss on its own, and nothing unrequested', async function () {
      const userId = freshUserId();
      await ctx.cache.put(balanceCase.ref(userId), balanceCase.value(3));
      await ctx.cache.put(platformQuotaCase.ref(userId), platformQuotaCase.value(2));
      await ctx.cache.invalidate(rpmOverrideCase.ref(userId));
      const result = await ctx.cache.readBatch(fullBatch(userId));
      expect(result).to.deep.equal({
        balance: { hit: true, value: balanceCase.value(3) },
        subscription: { hit: false, generation: 0 },
        apiKeyWindows: { hit: false, generation: 0 },
        platformQuota: { hit: true, value: platformQuotaCase.value(2) },
        rpmOverride: { hit: false, generation: 1 },
      });
      expect(await ctx.cache.readBatch({ userId, balance: true })).to.have.all.keys('balance');
      expect(await ctx.cache.readBatch({ userId })).to.deep.equal({});
    });

    it("keeps one user's entities apart from another's", async function () {
      const [a, b] = [freshUserId(), freshUserId()];
      await ctx.cache.put(balanceCase.ref(a), balanceCase.value(1, 1));
      expect((await ctx.cache.readBatch({ userId: b, balance: true })).balance).to.deep.equal({ hit: false, generation: 0 });
    });

    it('puts every key of one user under the same hash tag', function () {
      const userId = freshUserId();
      const keys = [...ALL_KINDS.map((kind) => ctx.cache.keys.entity(kind.ref(userId))), ctx.cache.keys.rpmUser(userId), ctx.cache.keys.rpmGroup(userId, 'g1')];
      for (const key of keys) expect(hashTag(key)).to.equal(`u:${userId}`);
    });

    it('costs one command per operation on the server', async function () {
      const { countCommands } = ctx.target;
      if (!countCommands) this.skip(); // the memory cache makes no round trips at all
      const userId = freshUserId();
      await ctx.cache.readBatch(fullBatch(userId)); // first use per connection may load the script
      expect(await countCommands(ctx.cache, () => ctx.cache.readBatch(fullBatch(userId)))).to.equal(1);
      expect(await countCommands(ctx.cache, () => ctx.cache.fill(balanceCase.ref(userId), balanceCase.value(1), 0))).to.equal(1);
      expect(await countCommands(ctx.cache, () => ctx.cache.put(balanceCase.ref(userId), balanceCase.value(2)))).to.equal(1);
      expect(await countCommands(ctx.cache, () => ctx.cache.invalidate(balanceCase.ref(userId)))).to.equal(1);
      const rpm = { userId, group: { groupId: 'g1', cap: 5 }, userCap: 5 };
      expect(await countCommands(ctx.cache, () => ctx.cache.rpmHit(rpm))).to.equal(1);
    });
  });
}

function versionCases(ctx: ContractContext, kind: KindCase<CacheEntityKind>): void {
  const read = async (userId: string) => (await ctx.cache.readBatch(kind.batch(userId)))[kind.slot];

  it('misses with generation 0 when absent, and a fill then reads back exactly', async function () {
    const userId = freshUserId();
    expect(await read(userId)).to.deep.equal({ hit: false, generation: 0 });
    expect(await ctx.cache.fill(kind.ref(userId), kind.value(4, 1), 0)).to.equal(true);
    expect(await read(userId)).to.deep.equal({ hit: true, value: kind.value(4, 1) });
  });

  it('never lets an older version overwrite a newer one', async function () {
    const userId = freshUserId();
    expect(await ctx.cache.put(kind.ref(userId), kind.value(5, 1))).to.equal(true);
    expect(await ctx.cache.put(kind.ref(userId), kind.value(4, 2))).to.equal(false);
    expect(await ctx.cache.fill(kind.ref(userId), kind.value(4, 2), 0)).to.equal(false);
    expect(await read(userId)).to.deep.equal({ hit: true, value: kind.value(5, 1) });
    expect(await ctx.cache.put(kind.ref(userId), kind.value(6, 2))).to.equal(true);
    expect(await read(userId)).to.deep.equal({ hit: true, value: kind.value(6, 2) });
  });

  it('treats an equal version as already applied', async function () {
    const userId = freshUserId();
    expect(await ctx.cache.put(kind.ref(userId), kind.value(5, 1))).to.equal(true);
    expect(await ctx.cache.put(kind.ref(userId), kind.value(5, 1))).to.equal(false);
    expect(await ctx.cache.put(kind.ref(userId), kind.value(5, 2))).to.equal(false);
    expect(await ctx.cache.fill(kind.ref(userId), kind.value(5, 2), 0)).to.equal(false);
    expect(await read(userId)).to.deep.equal({ hit: true, value: kind.value(5, 1) });
  });

  it('is never undone by a fill whose store read began before an invalidation', async function () {
    const userId = freshUserId();
    await ctx.cache.put(kind.ref(userId), kind.value(5, 1));
    await ctx.cache.invalidate(kind.ref(userId));
    const miss = await read(userId);
    expect(miss).to.deep.equal({ hit: false, generation: 1 });
    // A store read begins (generation 1 remembered), then the admin changes the row and invalidates again.
    await ctx.cache.invalidate(kind.ref(userId));
    expect(await ctx.cache.fill(kind.ref(userId), kind.value(6, 1), 1)).to.equal(false);
    expect(await read(userId)).to.deep.equal({ hit: false, generation: 2 });
    // A read that began after the invalidation fills normally, even at the version the tombstone remembers.
    expect(await ctx.cache.fill(kind.ref(userId), kind.value(5, 1), 2)).to.equal(true);
    expect(await read(userId)).to.deep.equal({ hit: true, value: kind.value(5, 1) });
  });

  it('refuses a fill that began while the key was absent once the key is invalidated', async function () {
    const userId = freshUserId();
    expect(await read(userId)).to.deep.equal({ hit: false, generation: 0 });
    await ctx.cache.invalidate(kind.ref(userId));
    expect(await ctx.cache.fill(kind.ref(userId), kind.value(1), 0)).to.equal(false);
    expect(await read(userId)).to.deep.equal({ hit: false, generation: 1 });
  });

  it('keeps the last version in the tombstone and the generation across puts', async function () {
    const userId = freshUserId();
    await ctx.cache.put(kind.ref(userId), kind.value(5, 1));
    await ctx.cache.invalidate(kind.ref(userId));
    expect(await ctx.cache.put(kind.ref(userId), kind.value(4, 2))).to.equal(false);
    expect(await ctx.cache.put(kind.ref(userId), kind.value(5, 2))).to.equal(false);
    expect(await read(userId)).to.deep.equal({ hit: false, generation: 1 });
    expect(await ctx.cache.put(kind.ref(userId), kind.value(6, 2))).to.equal(true);
    expect(await read(userId)).to.deep.equal({ hit: true, value: kind.value(6, 2) });
    // The put kept generation 1, so a fill from before the invalidation is still refused...
    expect(await ctx.cache.fill(kind.ref(userId), kind.value(7, 1), 0)).to.equal(false);
    // ...and the next invalidation counts on from it.
    await ctx.cache.invalidate(kind.ref(userId));
    expect(await read(userId)).to.deep.equal({ hit: false, generation: 2 });
  });

  it('lets a fill with the current generation replace an older live value', async function () {
    const userId = freshUserId();
    await ctx.cache.put(kind.ref(userId), kind.value(5, 1));
    expect(await ctx.cache.fill(kind.ref(userId), kind.value(8, 2), 0)).to.equal(true);
    expect(await read(userId)).to.deep.equal({ hit: true, value: kind.value(8, 2) });
  });
}

/** The part of a key Redis Cluster hashes: the first non-empty `{…}`. */
function hashTag(key: string): string | null {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : null;
}

async function expectRejection(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  const outcome = await promise.then(
    () => null,
    (err: unknown) => err,
  );
  expect(outcome).to.be.instanceOf(Error);
  expect((outcome as Error).message).to.match(pattern);
}

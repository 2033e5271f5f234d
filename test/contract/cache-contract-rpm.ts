// Contract part: the RPM script (docs/behaviour.md#requests-per-minute): exact caps per bucket, the group/user side effects, new
// buckets, and a Retry-After measured on the cache's own clock.
import { expect } from 'chai';
import type { RpmRequest, RpmResult } from '../../lib/types.js';
import type { ContractContext } from './cache-contract.js';
import { freshUserId } from './cache-fixtures.js';

const MINUTE = 60_000;

export function rpmContract(ctx: ContractContext): void {
  /**
   * Runs `body` early enough in a bucket that a burst of hits cannot straddle two buckets: on a
   * clock the test cannot move (Redis TIME), waits out the current bucket when < 3 s of it remain.
   */
  async function inOneBucket(body: () => Promise<void>): Promise<void> {
    const probe = await ctx.cache.rpmHit({ userId: freshUserId(), userCap: 1 });
    if (!ctx.target.clock && probe.bucketEndsAtMs - Date.now() < 3000) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, probe.bucketEndsAtMs - Date.now()) + 50));
    }
    await body();
  }

  async function hits(request: RpmRequest, times: number): Promise<RpmResult[]> {
    const results: RpmResult[] = [];
    for (let i = 0; i < times; i++) results.push(await ctx.cache.rpmHit(request));
    return results;
  }

  function sameBucket(results: RpmResult[]): void {
    expect(new Set(results.map((r) => r.bucketEndsAtMs)).size, 'all hits in one bucket').to.equal(1);
  }

  describe('RPM', function () {
    it('lets exactly N requests through a cap of N, and rejects request N+1', async function () {
      await inOneBucket(async () => {
        const results = await hits({ userId: freshUserId(), userCap: 3 }, 5);
        sameBucket(results);
        expect(results.map((r) => [r.outcome, r.userCount, r.groupCount])).to.deep.equal([
          ['allowed', 1, 0],
          ['allowed', 2, 0],
          ['allowed', 3, 0],
          ['user_exceeded', 4, 0],
          ['user_exceeded', 5, 0],
        ]);
      });
    });

    it('applies the group cap per user in the group, exactly N', async function () {
      await inOneBucket(async () => {
        const [a, b] = [freshUserId(), freshUserId()];
        const results = await hits({ userId: a, group: { groupId: 'g1', cap: 2 }, userCap: 0 }, 3);
        sameBucket(results);
        expect(results.map((r) => [r.outcome, r.groupCount, r.userCount])).to.deep.equal([
          ['allowed', 1, 0],
          ['allowed', 2, 0],
          ['group_exceeded', 3, 0],
        ]);
        // Another user of the same group, and the same user in another group, count from zero.
        expect((await ctx.cache.rpmHit({ userId: b, group: { groupId: 'g1', cap: 2 }, userCap: 0 })).groupCount).to.equal(1);
        expect((await ctx.cache.rpmHit({ userId: a, group: { groupId: 'g2', cap: 2 }, userCap: 0 })).groupCount).to.equal(1);
      });
    });

    it('does not count a request rejected by the group cap against the user', async function () {
      await inOneBucket(async () => {
        const userId = freshUserId();
        const grouped = { userId, group: { groupId: 'g1', cap: 2 }, userCap: 10 };
        const results = await hits(grouped, 3);
        expect(results.map((r) => [r.outcome, r.groupCount, r.userCount])).to.deep.equal([
          ['allowed', 1, 1],
          ['allowed', 2, 2],
          ['group_exceeded', 3, 0],
        ]);
        const next = await ctx.cache.rpmHit({ userId, userCap: 10 });
        sameBucket([...results, next]);
        expect([next.outcome, next.userCount, next.groupCount]).to.deep.equal(['allowed', 3, 0]);
      });
    });

    it('has already counted in the group a request the user cap rejects', async function () {
      await inOneBucket(async () => {
        const userId = freshUserId();
        const results = await hits({ userId, group: { groupId: 'g1', cap: 10 }, userCap: 1 }, 2);
        expect(results.map((r) => [r.outcome, r.groupCount, r.userCount])).to.deep.equal([
          ['allowed', 1, 1],
          ['user_exceeded', 2, 2],
        ]);
        const next = await ctx.cache.rpmHit({ userId, group: { groupId: 'g1', cap: 10 }, userCap: 0 });
        sameBucket([...results, next]);
        expect([next.outcome, next.groupCount, next.userCount]).to.deep.equal(['allowed', 3, 0]);
      });
    });

    it('leaves the user counter alone when the user has no cap', async function () {
      await inOneBucket(async () => {
        const userId = freshUserId();
        expect((await ctx.cache.rpmHit({ userId, userCap: 0 })).userCount).to.equal(0);
        expect(await ctx.raw.read(ctx.cache.keys.rpmUser(userId))).to.equal(null);
        expect((await ctx.cache.rpmHit({ userId, userCap: 5 })).userCount).to.equal(1);
      });
    });

    it('restarts a counter left from an older bucket, and continues one of the current bucket', async function () {
      await inOneBucket(async () => {
        const userId = freshUserId();
        const key = ctx.cache.keys.rpmUser(userId);
        const first = await ctx.cache.rpmHit({ userId, userCap: 100 });
        const bucket = first.bucketEndsAtMs / MINUTE - 1;
        // One field, named by the minute bucket, holding the count.
        expect(await ctx.raw.read(key)).to.deep.equal({ [bucket]: '1' });
        await ctx.raw.write(key, { [bucket - 1]: '99' });
        expect((await ctx.cache.rpmHit({ userId, userCap: 100 })).userCount).to.equal(1);
        expect(await ctx.raw.read(key), 'the older bucket is gone').to.deep.equal({ [bucket]: '1' });
        await ctx.raw.write(key, { [bucket]: '41' });
        expect((await ctx.cache.rpmHit({ userId, userCap: 100 })).userCount).to.equal(42);
        expect(await ctx.raw.read(key)).to.deep.equal({ [bucket]: '42' });
      });
    });

    it('answers a bucket end on a minute boundary and a Retry-After to it from the same clock', async function () {
      const before = ctx.target.clock?.now() ?? Date.now();
      const result = await ctx.cache.rpmHit({ userId: freshUserId(), userCap: 1 });
      const after = ctx.target.clock?.now() ?? Date.now();
      expect(result.bucketEndsAtMs % MINUTE).to.equal(0);
      expect(result.bucketEndsAtMs).to.be.within(before + 1, after + MINUTE);
      // Redis answers from its own TIME; on this single host it is the same clock the test reads.
      const latest = Math.ceil((result.bucketEndsAtMs - before) / 1000);
      const earliest = Math.max(1, Math.ceil((result.bucketEndsAtMs - after) / 1000));
      expect(result.retryAfterSec).to.be.within(earliest, latest);
    });

    it('starts a new bucket when the minute turns, with Retry-After counting down to its end', async function () {
      const { clock } = ctx.target;
      if (!clock) this.skip(); // covered on Redis by the stale-bucket test above
      clock.advance(MINUTE - (clock.now() % MINUTE) + 12_300); // 12.3 s into a bucket
      const userId = freshUserId();
      const first = await ctx.cache.rpmHit({ userId, userCap: 1 });
      expect([first.outcome, first.retryAfterSec]).to.deep.equal(['allowed', 48]);
      clock.advance(47_699); // 1 ms before the end
      const last = await ctx.cache.rpmHit({ userId, userCap: 1 });
      expect([last.outcome, last.retryAfterSec, last.bucketEndsAtMs]).to.deep.equal(['user_exceeded', 1, first.bucketEndsAtMs]);
      clock.advance(1);
      const next = await ctx.cache.rpmHit({ userId, userCap: 1 });
      expect([next.outcome, next.userCount, next.retryAfterSec, next.bucketEndsAtMs]).to.deep.equal(['allowed', 1, 60, first.bucketEndsAtMs + MINUTE]);
    });

    it('rejects caps that are not integers, naming them', async function () {
      const userId = freshUserId();
      for (const [request, field] of [
        [{ userId, userCap: 1.5 }, 'userCap'],
        [{ userId, userCap: -1 }, 'userCap'],
        [{ userId, group: { groupId: 'g1', cap: 0 }, userCap: 1 }, 'group.cap'],
      ] as const) {
        const outcome = await ctx.cache.rpmHit(request).then(
          () => null,
          (err: unknown) => err,
        );
        expect(outcome).to.be.instanceOf(TypeError);
        expect((outcome as Error).message).to.include(field);
      }
    });
  });
}

// MemoryBillingCache beyond the shared contract: option checks, LRU bounds, the background sweep and
// its timer, close(), and the codec's refusal of values it could not read back.
import { expect } from 'chai';
import { ManualClock } from '../../lib/clock.js';
import { MemoryBillingCache, memoryRawAccess, type MemoryBillingCacheOptions } from '../../lib/cache/memory-cache.js';
import type { Clock } from '../../lib/types.js';

const START = Date.UTC(2025, 0, 6, 12, 0, 0);
const balanceRef = (userId: string) => ({ kind: 'balance', userId }) as const;
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => null,
    (err: unknown) => err,
  );
  expect(outcome, 'expected a rejection').to.be.instanceOf(Error);
  return outcome as Error;
}

/** Polls until `done` holds, for at most `limitMs`: waits for a timer, never measures one. */
async function eventually(done: () => boolean, limitMs = 2000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await delay(5);
  }
}

describe('MemoryBillingCache', function () {
  const opened: MemoryBillingCache[] = [];
  const open = (options: MemoryBillingCacheOptions = {}) => {
    const cache = new MemoryBillingCache({ clock: new ManualClock(START), ...options });
    opened.push(cache);
    return cache;
  };

  afterEach(async function () {
    for (const cache of opened.splice(0)) await cache.close();
  });

  describe('options', function () {
    it('refuses bad values, naming the option', function () {
      const cases: [MemoryBillingCacheOptions, RegExp][] = [
        [{ maxEntries: 0 }, /maxEntries/],
        [{ maxEntries: 1.5 }, /maxEntries/],
        [{ maxEntries: '10' as unknown as number }, /maxEntries/],
        [{ sweepIntervalMs: -1 }, /sweepIntervalMs/],
        [{ clock: {} as Clock }, /clock/],
        [{ random: 1 as unknown as () => number }, /random/],
        [{ prefix: 'a b' }, /prefix/],
        [{ prefix: '{tag}' }, /prefix/],
      ];
      for (const [options, pattern] of cases) expect(() => new MemoryBillingCache(options), String(pattern)).to.throw(TypeError, pattern);
    });

    it('keys entries like the Redis cache, under the given prefix', function () {
      expect(open({ prefix: 'p:' }).keys.entity(balanceRef('7'))).to.equal('p:{u:7}:bal');
      expect(open().keys.rpmGroup('7', 'g')).to.equal('kbe:{u:7}:rpm:g:g');
    });
  });

  describe('bounds', function () {
    it('evicts the least recently used entry beyond maxEntries, reads counting as use', async function () {
      const cache = open({ maxEntries: 3 });
      for (const userId of ['a', 'b', 'c']) await cache.put(balanceRef(userId), { version: 1, balance: 1n });
      await cache.readBatch({ userId: 'a', balance: true });
      await cache.put(balanceRef('d'), { version: 1, balance: 1n });
      expect(cache.size).to.equal(3);
      expect((await cache.readBatch({ userId: 'b', balance: true })).balance).to.deep.equal({ hit: false, generation: 0 });
      for (const userId of ['a', 'c', 'd']) expect((await cache.readBatch({ userId, balance: true })).balance?.hit, userId).to.equal(true);
    });

    it('counts RPM counters and tombstones as entries', async function () {
      const cache = open({ maxEntries: 2 });
      await cache.put(balanceRef('a'), { version: 1, balance: 1n });
      await cache.invalidate(balanceRef('b'));
      await cache.rpmHit({ userId: 'c', userCap: 5 });
      expect(cache.size).to.equal(2);
      expect((await cache.readBatch({ userId: 'a', balance: true })).balance).to.deep.equal({ hit: false, generation: 0 });
      expect((await cache.readBatch({ userId: 'b', balance: true })).balance).to.deep.equal({ hit: false, generation: 1 });
    });
  });

  describe('expiry', function () {
    it('sweeps expired entries nobody reads again', async function () {
      const clock = new ManualClock(START);
      const cache = open({ clock, sweepIntervalMs: 5 });
      await cache.put(balanceRef('a'), { version: 1, balance: 1n });
      await cache.put(
        { kind: 'apiKeyWindows', userId: 'a', apiKeyId: 'k' },
        {
          version: 1,
          usage5h: 0n,
          usage1d: 0n,
          usage7d: 0n,
          start5hMs: null,
          start1dMs: null,
          start7dMs: null,
        },
      );
      clock.advance(300_001);
      await eventually(() => cache.size === 1); // the 7-day key windows stay
      expect(cache[memoryRawAccess]().ttlMs(cache.keys.entity(balanceRef('a')))).to.equal(-2);
    });

    it('runs its sweep on an unref’d timer, and close() stops it', async function () {
      let reads = 0;
      const clock: Clock = {
        now: () => {
          reads++;
          return START;
        },
      };
      const activeTimers = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
      const timersBefore = activeTimers();
      const cache = open({ clock, sweepIntervalMs: 5 });
      expect(activeTimers(), 'the sweep timer must not keep the process alive').to.equal(timersBefore);
      await eventually(() => reads > 2); // the sweep reads the clock on every run
      await cache.close();
      const readsAtClose = reads;
      await delay(40);
      expect(reads).to.equal(readsAtClose);
    });
  });

  describe('close()', function () {
    it('rejects every operation afterwards and drops the entries', async function () {
      const cache = open();
      await cache.put(balanceRef('a'), { version: 1, balance: 1n });
      await cache.close();
      await cache.close();
      expect(cache.size).to.equal(0);
      for (const operation of [
        cache.readBatch({ userId: 'a', balance: true }),
        cache.fill(balanceRef('a'), { version: 2, balance: 1n }, 0),
        cache.put(balanceRef('a'), { version: 2, balance: 1n }),
        cache.invalidate(balanceRef('a')),
        cache.rpmHit({ userId: 'a', userCap: 1 }),
        cache.ping(),
      ]) {
        expect((await rejection(operation)).message).to.match(/closed/);
      }
    });
  });

  describe('values it could not read back', function () {
    it('refuses them with an error naming the property, and stores nothing', async function () {
      const cache = open();
      const cases: [Promise<unknown>, RegExp][] = [
        [cache.put(balanceRef('a'), { version: 1, balance: 1 as unknown as bigint }), /balance\.balance/],
        [cache.put(balanceRef('a'), { version: 1.5, balance: 1n }), /balance\.version/],
        [cache.put({ kind: 'rpmOverride', userId: 'a', groupId: 'g' }, { version: 1, value: -1 }), /rpmOverride\.value/],
        [
          cache.put(
            { kind: 'subscription', userId: 'a', groupId: 'g' },
            {
              version: 1,
              subscriptionId: 's',
              status: 'paused' as 'active',
              startsAtMs: START,
              expiresAtMs: START,
              dailyUsage: 0n,
              weeklyUsage: 0n,
              monthlyUsage: 0n,
              dailyStartMs: null,
              weeklyStartMs: null,
              monthlyStartMs: null,
            },
          ),
          /subscription\.status/,
        ],
      ];
      for (const [operation, pattern] of cases) expect((await rejection(operation)).message).to.match(pattern);
      expect(cache.size).to.equal(0);
    });
  });
});

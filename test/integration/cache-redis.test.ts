// RedisBillingCache on a single Redis beyond the shared contract: keys of a foreign type, construction
// checks, close(), real connection errors, and the Lua field rules agreeing with the TypeScript codec.
import { expect } from 'chai';
import { once } from 'node:events';
import net from 'node:net';
import { Redis } from 'ioredis';
import { checkField, luaRule, type FieldRule } from '../../lib/cache/entity-codec.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { LUA_HELPERS } from '../../lib/cache/redis-scripts.js';
import { createRedisClient, deleteKeysWithPrefix, socketWritesDuring } from '../helpers/redis.js';
import { requireRedis, uniqueSuffix } from '../helpers/services.js';

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => null,
    (err: unknown) => err,
  );
  expect(outcome, 'expected a rejection').to.be.instanceOf(Error);
  return outcome as Error;
}

describe('RedisBillingCache on a single Redis', function () {
  let client: Redis;
  let prefix: string;
  let cache: RedisBillingCache;

  before(async function () {
    await requireRedis(this);
    client = createRedisClient();
    prefix = `kbe-test-${uniqueSuffix()}:`;
    cache = new RedisBillingCache(client, { prefix, random: () => 0 });
  });

  after(async function () {
    if (!client) return;
    await deleteKeysWithPrefix(client, prefix);
    client.disconnect();
  });

  describe('keys holding another type', function () {
    it('reads them as absent and lets every script replace them', async function () {
      const userId = `foreign-${uniqueSuffix()}`;
      const ref = { kind: 'balance', userId } as const;
      const key = cache.keys.entity(ref);
      await client.set(key, 'not a hash');
      expect(await cache.readBatch({ userId, balance: true })).to.deep.equal({ balance: { hit: false, generation: 0 } });
      expect(await cache.fill(ref, { version: 1, balance: 7n }, 0)).to.equal(true);
      expect(await cache.readBatch({ userId, balance: true })).to.deep.equal({ balance: { hit: true, value: { version: 1, balance: 7n } } });

      await client.del(key);
      await client.rpush(key, 'a', 'b');
      expect(await cache.put(ref, { version: 2, balance: 8n })).to.equal(true);
      await client.del(key);
      await client.sadd(key, 'x');
      await cache.invalidate(ref);
      expect(await cache.readBatch({ userId, balance: true })).to.deep.equal({ balance: { hit: false, generation: 1 } });
    });

    it('restarts an RPM counter that is not a hash', async function () {
      const userId = `foreign-${uniqueSuffix()}`;
      await client.set(cache.keys.rpmUser(userId), '41');
      await client.rpush(cache.keys.rpmGroup(userId, 'g1'), 'x');
      const result = await cache.rpmHit({ userId, group: { groupId: 'g1', cap: 5 }, userCap: 5 });
      expect([result.outcome, result.groupCount, result.userCount]).to.deep.equal(['allowed', 1, 1]);
      expect(await client.type(cache.keys.rpmUser(userId))).to.equal('hash');
    });
  });

  describe('decoded replies', function () {
    it('hands out one frozen decoding while the reply is unchanged, and decodes again after any write', async function () {
      const userId = `memo-${uniqueSuffix()}`;
      const ref = { kind: 'balance', userId } as const;
      const request = { userId, balance: true, platform: 'openai' };
      await cache.put(ref, { version: 1, balance: 700n });
      const first = await cache.readBatch(request);
      const second = await cache.readBatch(request);
      expect(second).to.equal(first, 'the same decoding');
      expect(Object.isFrozen(first) && Object.isFrozen(first.balance)).to.equal(true);
      if (!first.balance?.hit) throw new Error('expected a hit');
      expect(Object.isFrozen(first.balance.value)).to.equal(true);

      await cache.put(ref, { version: 2, balance: 650n });
      const afterPut = await cache.readBatch(request);
      expect(afterPut).not.to.equal(first);
      expect(afterPut.balance).to.deep.equal({ hit: true, value: { version: 2, balance: 650n } });

      // A write from outside this client (another gateway instance) is seen the same way.
      await client.hset(cache.keys.entity(ref), 'b', '600');
      expect((await cache.readBatch(request)).balance).to.deep.equal({ hit: true, value: { version: 2, balance: 600n } });
      await cache.invalidate(ref);
      expect((await cache.readBatch(request)).balance).to.deep.equal({ hit: false, generation: 1 });
    });

    it("keeps the key lists of one user's keys and platforms side by side, at most four, dropping the one read longest ago", async function () {
      const own = new RedisBillingCache(client, { prefix });
      const userId = `memo-lists-${uniqueSuffix()}`;
      await own.put({ kind: 'balance', userId }, { version: 1, balance: 700n });
      // Quota rows for the two platforms alternated below: a counting read needs every entity cached.
      for (const platform of ['p1', 'p2']) {
        await own.put(
          { kind: 'platformQuota', userId, platform },
          {
            version: 1,
            sentinel: false,
            dailyLimit: null,
            weeklyLimit: null,
            monthlyLimit: null,
            dailyUsage: 0n,
            weeklyUsage: 0n,
            monthlyUsage: 0n,
            dailyStartMs: null,
            weeklyStartMs: null,
            monthlyStartMs: null,
          },
        );
      }
      const request = (platform: string) => ({ userId, balance: true, platform });
      const first = await own.readBatch(request('p1'));
      const second = await own.readBatch(request('p2'));
      // Alternating between two key lists keeps both decodings (and the counting read on both).
      expect(await own.readBatch(request('p1'))).to.equal(first);
      expect(await own.readBatch(request('p2'))).to.equal(second);
      const countUser = () => ({ userId, userCap: 1_000 });
      expect((await own.readBatchCounting(request('p1'), countUser)).rpm?.userCount).to.equal(1);
      expect((await own.readBatchCounting(request('p2'), countUser)).rpm?.userCount).to.equal(2);
      // p1 was read before p2, so it is the one read longest ago when a fifth list arrives.
      for (const platform of ['p3', 'p4', 'p5']) await own.readBatch(request(platform));
      expect(await own.readBatch(request('p2'))).to.equal(second, 'still kept');
      const reread = await own.readBatch(request('p1'));
      expect(reread).not.to.equal(first, 'dropped, so decoded again');
      expect(reread).to.deep.equal(first);
    });

    it('keeps a bounded number of key lists, dropping the one read longest ago', async function () {
      const own = new RedisBillingCache(client, { prefix });
      const suffix = uniqueSuffix();
      const first = { userId: `memo-first-${suffix}`, balance: true };
      const second = { userId: `memo-second-${suffix}`, balance: true };
      const firstRead = await own.readBatch(first);
      const secondRead = await own.readBatch(second);
      // Read again, so `second` is now the key list read longest ago.
      expect(await own.readBatch(first)).to.equal(firstRead);
      // 1 023 more key lists make 1 025: one over the bound, so the one read longest ago goes.
      await Promise.all(Array.from({ length: 1023 }, (_, i) => own.readBatch({ userId: `memo-fill-${i}-${suffix}`, balance: true })));
      expect(await own.readBatch(first)).to.equal(firstRead, 'still kept');
      const reread = await own.readBatch(second);
      expect(reread).not.to.equal(secondRead, 'dropped, so decoded again');
      expect(reread).to.deep.equal(secondRead);
    });
  });

  describe('counting read and the change stamp', function () {
    const countAlways = (userId: string) => () => ({ userId, userCap: 1_000 });
    /** The user counter's count: its one field is named by the minute bucket. */
    const userCount = async (userId: string) => Object.values(await client.hgetall(cache.keys.rpmUser(userId)));
    const setUp = async () => {
      const userId = `stamp-${uniqueSuffix()}`;
      const ref = { kind: 'balance', userId } as const;
      const request = { userId, balance: true };
      await cache.put(ref, { version: 1, balance: 700n });
      // The first read has no decoded reply to count on: a plain read.
      expect((await cache.readBatchCounting(request, countAlways(userId))).rpm).to.equal(undefined);
      const counted = await cache.readBatchCounting(request, countAlways(userId));
      expect(counted.rpm?.userCount).to.equal(1);
      return { userId, ref, request, stampKey: cache.keys.changeStamp(userId) };
    };

    it("declines to count after any write of the user's entities by another client (put, fill, invalidate), and returns the fresh data", async function () {
      const { userId, ref, request } = await setUp();
      const other = new RedisBillingCache(client, { prefix, random: () => 0 });
      await other.put(ref, { version: 2, balance: 650n });
      const afterPut = await cache.readBatchCounting(request, countAlways(userId));
      expect(afterPut.rpm).to.equal(undefined, 'nothing counted');
      expect(afterPut.batch.balance).to.deep.equal({ hit: true, value: { version: 2, balance: 650n } });
      expect((await cache.readBatchCounting(request, countAlways(userId))).rpm?.userCount).to.equal(2);

      // A write of another entity of the same user moves the same stamp.
      const quota = { kind: 'rpmOverride', userId, groupId: 'g1' } as const;
      expect(await other.fill(quota, { version: 0, value: 5 }, 0)).to.equal(true);
      expect((await cache.readBatchCounting(request, countAlways(userId))).rpm).to.equal(undefined);
      expect((await cache.readBatchCounting(request, countAlways(userId))).rpm?.userCount).to.equal(3);

      await other.invalidate(ref);
      const afterInvalidate = await cache.readBatchCounting(request, countAlways(userId));
      expect(afterInvalidate.rpm).to.equal(undefined);
      expect(afterInvalidate.batch.balance).to.deep.equal({ hit: false, generation: 1 });
      expect(await userCount(userId)).to.deep.equal(['3'], 'declined reads never counted');
    });

    it('declines to count once an entity of the reply has expired, though no write moved the stamp', async function () {
      const { userId, ref, request } = await setUp();
      await client.pexpire(cache.keys.entity(ref), 1);
      await new Promise((resolve) => setTimeout(resolve, 10));
      const later = await cache.readBatchCounting(request, countAlways(userId));
      expect(later.rpm).to.equal(undefined, 'not counted on the old reply');
      expect(later.batch.balance).to.deep.equal({ hit: false, generation: 0 });
      expect(await userCount(userId)).to.deep.equal(['1']);
    });

    it('never counts on a reply with a miss, whatever the caller offers (a miss cannot be confirmed as still current)', async function () {
      const userId = `stamp-miss-${uniqueSuffix()}`;
      const request = { userId, balance: true };
      for (let i = 0; i < 3; i++) {
        const read = await cache.readBatchCounting(request, countAlways(userId));
        expect(read.rpm).to.equal(undefined);
        expect(read.batch.balance?.hit).to.equal(false);
      }
      expect(await client.exists(cache.keys.rpmUser(userId))).to.equal(0);
    });

    it('starts a lost or unreadable stamp above every stamp handed out before', async function () {
      const { userId, request, stampKey } = await setUp();
      const before = BigInt((await client.get(stampKey))!);
      await client.del(stampKey);
      expect((await cache.readBatchCounting(request, countAlways(userId))).rpm).to.equal(undefined);
      const recreated = BigInt((await client.get(stampKey))!);
      expect(recreated > before).to.equal(true);
      expect((await cache.readBatchCounting(request, countAlways(userId))).rpm?.userCount).to.equal(2);

      await client.del(stampKey);
      await client.hset(stampKey, 'x', '1');
      expect((await cache.readBatchCounting(request, countAlways(userId))).rpm).to.equal(undefined);
      expect(BigInt((await client.get(stampKey))!) > recreated).to.equal(true);
    });

    it('moves the stamp by one when writes come faster than the server clock ticks', async function () {
      const { ref, stampKey } = await setUp();
      const far = 9_000_000_000_000_000n; // above any time in µs for centuries
      await client.set(stampKey, far.toString());
      await cache.put(ref, { version: 5, balance: 1n });
      expect(await client.get(stampKey)).to.equal((far + 1n).toString());
    });
  });

  describe('construction', function () {
    it('refuses a bad prefix, naming the option', function () {
      for (const prefix of ['a{b', 'a}b', 'with space', 'tab\t', 'x'.repeat(65), 42]) {
        expect(() => new RedisBillingCache(client, { prefix: prefix as string })).to.throw(TypeError, /prefix/);
      }
      expect(new RedisBillingCache(client, { prefix: 'x'.repeat(64) }).keys.prefix).to.have.length(64);
      expect(new RedisBillingCache(client).keys.user('7')).to.equal('kbe:{u:7}');
    });

    it('refuses a client that is not ioredis and a random source that is not a function', function () {
      expect(() => new RedisBillingCache({} as Redis)).to.throw(TypeError, /client/);
      expect(() => new RedisBillingCache(client, { random: 0.5 as unknown as () => number })).to.throw(TypeError, /random/);
    });

    it('refuses a quitOnClose or coalesceWrites that is not a boolean, naming the option', function () {
      for (const value of ['yes', 1, null]) {
        expect(() => new RedisBillingCache(client, { quitOnClose: value as unknown as boolean })).to.throw(TypeError, /quitOnClose/);
        expect(() => new RedisBillingCache(client, { coalesceWrites: value as unknown as boolean })).to.throw(TypeError, /coalesceWrites/);
      }
    });
  });

  describe('commands of one event-loop turn', function () {
    const USERS = 20;

    /** USERS users with balances 1..USERS cached, and the batched read of each, issued in one turn. */
    async function seededUsers(): Promise<string[]> {
      const users = Array.from({ length: USERS }, (_, i) => `turn-${i}-${uniqueSuffix()}`);
      for (const [i, userId] of users.entries()) await cache.fill({ kind: 'balance', userId }, { version: 1, balance: BigInt(i + 1) }, 0);
      return users;
    }

    function readAll(reader: RedisBillingCache, users: string[]): Promise<unknown[]> {
      return Promise.all(users.map((userId) => reader.readBatch({ userId, balance: true })));
    }

    it('leave in one socket write, each answered as if sent alone', async function () {
      const users = await seededUsers();
      let replies: unknown[] = [];
      const writes = await socketWritesDuring(client, async () => (replies = await readAll(cache, users)));
      expect(writes).to.deep.equal([1]);
      expect(replies).to.deep.equal(users.map((_, i) => ({ balance: { hit: true, value: { version: 1, balance: BigInt(i + 1) } } })));
    });

    it('leave one write each with coalesceWrites: false', async function () {
      const users = await seededUsers();
      const uncoalesced = new RedisBillingCache(client, { prefix, coalesceWrites: false });
      let replies: unknown[] = [];
      const writes = await socketWritesDuring(client, async () => (replies = await readAll(uncoalesced, users)));
      expect(writes).to.deep.equal([USERS]);
      expect(replies).to.have.length(USERS);
    });

    it('are released in the check phase of the same turn, also when sent from an immediate', async function () {
      const stream = (client as unknown as { stream: { writableCorked: number } }).stream;
      const pending = cache.ping();
      expect(stream.writableCorked, 'held while the turn runs').to.equal(1);
      await new Promise<void>((resolve) => setImmediate(resolve));
      expect(stream.writableCorked, 'released by the next immediate').to.equal(0);
      await pending;
      // Sent from the check phase, released in the next turn's check phase without a blocking poll in between.
      const fromImmediate = await new Promise<Promise<void>>((resolve) => setImmediate(() => resolve(cache.ping())));
      await fromImmediate;
      expect(stream.writableCorked).to.equal(0);
    });

    it('leave a connection that is not ready to ioredis (connect, offline queue)', async function () {
      const lazy = new Redis(client.options.port ?? 6379, client.options.host ?? '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        const onLazy = new RedisBillingCache(lazy, { prefix });
        const [userId] = await seededUsers();
        expect(lazy.status).to.equal('wait');
        expect(await onLazy.readBatch({ userId: userId!, balance: true })).to.deep.equal({ balance: { hit: true, value: { version: 1, balance: 1n } } });
      } finally {
        lazy.disconnect();
      }
    });
  });

  describe('close and connection failures', function () {
    it('rejects every operation after close(), and leaves the client open by default', async function () {
      const closing = new RedisBillingCache(client, { prefix });
      await closing.close();
      await closing.close();
      expect((await rejection(closing.readBatch({ userId: '1', balance: true }))).message).to.match(/closed/);
      expect((await rejection(closing.rpmHit({ userId: '1', userCap: 1 }))).message).to.match(/closed/);
      expect(await client.ping()).to.equal('PONG');
    });

    it('quits the client on close() when asked to', async function () {
      const own = createRedisClient();
      const owning = new RedisBillingCache(own, { prefix, quitOnClose: true });
      await owning.ping();
      await owning.close();
      // QUIT has been answered; the socket closes right after.
      if (own.status !== 'end') await once(own, 'end');
      expect(own.status).to.equal('end');
    });

    it('rejects when Redis cannot be reached, so the caller can fall back to the store', async function () {
      const port = await new Promise<number>((resolve) => {
        const server = net.createServer().listen(0, '127.0.0.1', () => {
          const { port: free } = server.address() as net.AddressInfo;
          server.close(() => resolve(free));
        });
      });
      const dead = new Redis({ port, host: '127.0.0.1', lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
      dead.on('error', () => {});
      const unreachable = new RedisBillingCache(dead, { prefix });
      await rejection(unreachable.readBatch({ userId: '1', balance: true }));
      await rejection(unreachable.rpmHit({ userId: '1', userCap: 1 }));
      await rejection(unreachable.ping());
      dead.disconnect();
    });
  });

  describe('field rules', function () {
    const rules: FieldRule[] = [
      { type: 'int', min: -9007199254740991, max: 9007199254740991, nullable: false },
      { type: 'int', min: 0, max: 9007199254740991, nullable: true },
      { type: 'enum', values: ['active', 'expired', 'revoked', 'suspended'] },
      { type: 'enum', values: ['1'] },
      { type: 'text', maxLength: 128 },
    ];
    const samples = [
      '',
      '0',
      '-0',
      '7',
      '007',
      '-7',
      '+7',
      ' 7',
      '7 ',
      '7\n',
      '1.0',
      '1e3',
      '0x10',
      '-',
      '--1',
      'NaN',
      'Infinity',
      '9007199254740991',
      '9007199254740992',
      '-9007199254740991',
      '-9007199254740992',
      '00000000000000001',
      '000000000000000001',
      '99999999999999999',
      '\u0661',
      'active',
      'Active',
      'active|',
      '|active',
      'active|expired',
      '1',
      '11',
      'x'.repeat(128),
      'x'.repeat(129),
    ];

    it('accepts and refuses exactly what the TypeScript codec does', async function () {
      for (const rule of rules) {
        const reply = await client.eval(
          `${LUA_HELPERS}\nlocal out = {}\nfor i = 2, #ARGV do out[#out + 1] = valid(ARGV[1], ARGV[i]) and 1 or 0 end\nreturn out`,
          0,
          luaRule(rule),
          ...samples,
        );
        const lua = (reply as number[]).map((flag) => flag === 1);
        const typescript = samples.map((sample) => checkField(rule, sample));
        const disagreements = samples.filter((_, i) => lua[i] !== typescript[i]);
        expect(disagreements, `rule ${luaRule(rule)}`).to.deep.equal([]);
      }
    });
  });
});

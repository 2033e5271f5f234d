// RedisBillingCache on a real three-master Redis Cluster: 1,000 random user ids through every script
// and the batched read with no CROSSSLOT or MOVED error reaching the caller, keys spread over all masters.
import { expect } from 'chai';
import type { Cluster } from 'ioredis';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import type { CacheEntityRef } from '../../lib/types.js';
import { commandsSentDuring, socketWritesDuring } from '../helpers/redis.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster.js';
import { uniqueSuffix } from '../helpers/services.js';

const USERS = 1000;
const CONCURRENCY = 50;
const ID_FIRST = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const ID_REST = `${ID_FIRST}_.@-`;

/** A random id as lib/validate.ts admits them: digits only, or 1–64 of [A-Za-z0-9_.@-]. */
function randomUserId(seen: Set<string>): string {
  for (;;) {
    const id =
      Math.random() < 0.3
        ? String(Math.floor(Math.random() * Number.MAX_SAFE_INTEGER))
        : Array.from({ length: 1 + Math.floor(Math.random() * 64) }, (_, i) => {
            const alphabet = i === 0 ? ID_FIRST : ID_REST;
            return alphabet[Math.floor(Math.random() * alphabet.length)];
          }).join('');
    if (!seen.has(id)) {
      seen.add(id);
      return id;
    }
  }
}

describe('RedisBillingCache on Redis Cluster', function () {
  this.timeout(60_000);
  let cluster: RedisClusterHandle | undefined;
  let client: Cluster;
  let cache: RedisBillingCache;

  before(async function () {
    cluster = await startRedisCluster();
    client = await cluster.connect();
    cache = new RedisBillingCache(client, { prefix: `kbe-cl-${uniqueSuffix()}:` });
  });

  after(async function () {
    await cache?.close();
    await cluster?.stop();
  });

  /** Every script, in the order a request and its settlement would run them, for one user. */
  async function exercise(userId: string): Promise<void> {
    const balance: CacheEntityRef & { kind: 'balance' } = { kind: 'balance', userId };
    const batch = { userId, balance: true, subscriptionGroupId: 'g1', apiKeyId: 'key-1', platform: 'openai', rpmOverrideGroupId: 'g1' };
    const miss = await cache.readBatch(batch);
    expect(Object.values(miss).every((read) => !read.hit)).to.equal(true);
    expect(await cache.fill(balance, { version: 1, balance: 5_000_000n }, 0)).to.equal(true);
    expect(await cache.put({ kind: 'rpmOverride', userId, groupId: 'g1' }, { version: 1, value: null })).to.equal(true);
    await cache.invalidate({ kind: 'apiKeyWindows', userId, apiKeyId: 'key-1' });
    const rpm = await cache.rpmHit({ userId, group: { groupId: 'g1', cap: 10 }, userCap: 10 });
    expect(rpm.outcome).to.equal('allowed');
    const warm = await cache.readBatch(batch);
    expect(warm.balance).to.deep.equal({ hit: true, value: { version: 1, balance: 5_000_000n } });
    expect(warm.rpmOverride).to.deep.equal({ hit: true, value: { version: 1, value: null } });
    expect(warm.apiKeyWindows).to.deep.equal({ hit: false, generation: 1 });
  }

  it(`runs every script and the batched read for ${USERS} random user ids without a slot error`, async function () {
    const seen = new Set<string>();
    const users = Array.from({ length: USERS }, () => randomUserId(seen));
    const failures: string[] = [];
    for (let i = 0; i < users.length; i += CONCURRENCY) {
      const chunk = users.slice(i, i + CONCURRENCY);
      const outcomes = await Promise.allSettled(chunk.map(exercise));
      outcomes.forEach((outcome, j) => {
        if (outcome.status === 'rejected') failures.push(`${chunk[j]}: ${String(outcome.reason)}`);
      });
    }
    expect(failures.slice(0, 5), `${failures.length} users failed`).to.deep.equal([]);
    // The users' keys really are spread over the cluster: every master holds some.
    const sizes = await Promise.all(client.nodes('master').map((node) => node.dbsize()));
    expect(sizes).to.have.length(3);
    for (const size of sizes) expect(size).to.be.greaterThan(0);
  });

  it('sends one command to the one master that owns the user, with all keys in its slot', async function () {
    const userId = 'slot-check-user';
    await cache.readBatch({ userId, balance: true }); // connections and script cache warm
    const nodes = cluster?.nodes ?? [];
    const commands = await commandsSentDuring(nodes, client, () =>
      cache.readBatch({ userId, balance: true, subscriptionGroupId: 'g1', apiKeyId: 'k1', platform: 'openai', rpmOverrideGroupId: 'g1' }),
    );
    expect(commands).to.have.length(1);
    const [name, , numKeys, ...rest] = commands[0] ?? [];
    expect(name?.toLowerCase()).to.be.oneOf(['evalsha', 'eval']);
    expect(numKeys).to.equal('6'); // five entities and the user's change stamp
    const keys = rest.slice(0, 6);
    const slots = await Promise.all(keys.map((key) => client.call('CLUSTER', 'KEYSLOT', key)));
    expect(new Set(slots).size, `slots of ${keys.join(', ')}`).to.equal(1);
  });

  it('sends the commands of one event-loop turn in one socket write per master', async function () {
    const users = Array.from({ length: 30 }, (_, i) => `turn-${i}-${uniqueSuffix()}`);
    for (const [i, userId] of users.entries()) await cache.fill({ kind: 'balance', userId }, { version: 1, balance: BigInt(i + 1) }, 0);
    let replies: unknown[] = [];
    const writes = await socketWritesDuring(client, async () => {
      replies = await Promise.all(users.map((userId) => cache.readBatch({ userId, balance: true })));
    });
    // 30 users land on all three masters; each master's connection wrote once.
    expect(writes).to.deep.equal([1, 1, 1]);
    expect(replies).to.deep.equal(users.map((_, i) => ({ balance: { hit: true, value: { version: 1, balance: BigInt(i + 1) } } })));
  });
});

// recommendedRedisOptions / recommendedClusterOptions: the values and how overrides merge, then what
// they buy on a real client behind the fault proxy — no waiting while Redis is gone, a bounded wait while it is silent.
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { recommendedClusterOptions, recommendedRedisOptions } from '../../lib/cache/redis-client-options.js';
import { REDIS_URL, requireRedis } from '../helpers/services.js';
import { TcpFaultProxy } from '../helpers/tcp-proxy.js';
import { report, waitFor } from './fault-env.js';

async function failureAfter(command: Promise<unknown>): Promise<{ ms: number; message: string }> {
  const started = performance.now();
  try {
    await command;
  } catch (err) {
    return { ms: performance.now() - started, message: (err as Error).message };
  }
  throw new Error('the command succeeded');
}

describe('faults: recommended ioredis options', () => {
  describe('values', () => {
    it('fail fast: command timeout, no offline queue, no per-request retries, capped reconnect backoff', () => {
      const options = recommendedRedisOptions();
      expect(options).to.include({
        commandTimeout: 100,
        connectTimeout: 1000,
        socketTimeout: 1000,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
      });
      const delays = [1, 2, 3, 5, 10, 100, 10_000].map((times) => options.retryStrategy!(times) as number);
      expect(delays[0]).to.be.within(50, 99);
      expect(delays[1]).to.be.within(100, 149);
      for (const delay of delays) expect(delay).to.be.within(50, 1049);
      expect(delays.slice(-3).every((delay) => delay >= 1000)).to.equal(true);
    });

    it('overrides win, undefined values are ignored, and a non-object is refused by name', () => {
      const options = recommendedRedisOptions({ commandTimeout: 250, connectTimeout: undefined, keyPrefix: 'x:' });
      expect(options).to.include({ commandTimeout: 250, connectTimeout: 1000, keyPrefix: 'x:', enableOfflineQueue: false });
      expect(() => recommendedRedisOptions('fast' as never)).to.throw(TypeError, /recommendedRedisOptions overrides must be an options object, got string/);
      expect(() => recommendedClusterOptions({ redisOptions: null as never })).to.throw(TypeError, /overrides.redisOptions/);
    });

    it('Cluster: the same per-node timeouts under redisOptions (merged with overrides), no offline queue, short failover retries', () => {
      const options = recommendedClusterOptions({ redisOptions: { commandTimeout: 300, password: 'p' }, maxRedirections: 8 });
      expect(options).to.include({ enableOfflineQueue: false, maxRedirections: 8, retryDelayOnFailover: 50, slotsRefreshTimeout: 1000 });
      expect(options.redisOptions).to.include({
        commandTimeout: 300,
        password: 'p',
        connectTimeout: 1000,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
      });
      expect(options.clusterRetryStrategy!(50) as number).to.be.within(1000, 1049);
      expect(recommendedClusterOptions().redisOptions).to.include({ commandTimeout: 100 });
    });
  });

  describe('a client behind the fault proxy', function () {
    this.timeout(20_000);
    let proxy: TcpFaultProxy;
    let redis: Redis;

    before(async function () {
      await requireRedis(this);
      proxy = await TcpFaultProxy.start(REDIS_URL);
      redis = new Redis(proxy.urlFor(REDIS_URL), recommendedRedisOptions({ lazyConnect: true }));
      redis.on('error', () => {});
      await redis.connect();
    });

    after(async () => {
      redis?.disconnect();
      await proxy?.close();
    });

    it('cut: commands fail at once while disconnected; ready again within about a second of restore', async () => {
      await proxy.cut();
      await waitFor('the client to see the cut', () => redis.status !== 'ready', 1000);
      const failed = await failureAfter(redis.ping());
      // Nothing is queued or waits for a reconnect: the failure is immediate.
      expect(failed.ms).to.be.below(50);
      // Long enough for the reconnect backoff to reach its 1 s cap.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await proxy.restore();
      const readyAfterMs = await waitFor('the client to be ready again', () => redis.status === 'ready', 2000);
      expect(await redis.ping()).to.equal('PONG');
      report(`cut: PING failed in ${failed.ms.toFixed(1)} ms ("${failed.message}"); ready ${readyAfterMs.toFixed(0)} ms after restore (backoff capped at 1 s)`);
    });

    it('black-holed: a command gives up after commandTimeout; the silent connection is dropped and replaced', async () => {
      const accepted = proxy.accepted;
      await proxy.blackhole();
      const failed = await failureAfter(redis.ping());
      expect(failed.message).to.equal('Command timed out');
      expect(failed.ms).to.be.within(95, 400);
      // socketTimeout: no reply for 1 s → the socket is destroyed and the client reconnects.
      const droppedAfterMs = await waitFor('the client to drop the silent connection', () => proxy.accepted > accepted, 3000);
      await proxy.restore();
      await waitFor('the client to be ready again', () => redis.status === 'ready', 3000);
      expect(await redis.ping()).to.equal('PONG');
      report(`black-holed: PING gave up after ${failed.ms.toFixed(0)} ms; silent connection replaced after ${droppedAfterMs.toFixed(0)} ms`);
    });
  });
});

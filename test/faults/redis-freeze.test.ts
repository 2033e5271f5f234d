// Redis frozen (SIGSTOP of a redis-server this test owns) while requests reserve estimates: a reserve
// the client gave up on (commandTimeout) but that Redis runs once it wakes must hold nothing, so that
// afterwards no hold exists that no request owns and the user is served against their full balance.
// Requests that meet the freeze are held in the store instead (docs/holds.md).
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import {
  BillingMetrics,
  createBillingCore,
  KnexBillingStore,
  migrateBillingSchema,
  RedisBillingCache,
  recommendedRedisOptions,
  type BillingCore,
} from '../../lib/index.js';
import { DATABASE_URL, requirePostgres, uniqueSuffix } from '../helpers/services.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { recordingLogger, report, sleep } from './fault-env.js';

const BALANCE = '0.078';
const ESTIMATE = '0.01';
const WORKERS = 8;

describe('faults: Redis frozen while requests reserve', function () {
  this.timeout(60_000);
  let server: RedisServerHandle;
  let knex: Knex;
  const schema = `kbe_freeze_${uniqueSuffix()}`;

  before(async function () {
    await requirePostgres(this);
    server = await startRedisServer();
    knex = knexFactory({ client: 'pg', connection: DATABASE_URL, searchPath: [schema], pool: { min: 0, max: 8 } });
    await knex.raw('CREATE SCHEMA ??', [schema]);
    await migrateBillingSchema(knex);
  });

  after(async () => {
    await server?.stop();
    await knex?.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]);
    await knex?.destroy();
  });

  for (const freezeMs of [600, 2000]) {
    it(`a ${freezeMs} ms freeze under load leaves no hold without an owner; the user is then served against the full balance`, async () => {
      const redis = new Redis(server.url, recommendedRedisOptions({ lazyConnect: true }));
      redis.on('error', () => {});
      await redis.connect();
      const cache = new RedisBillingCache(redis, { prefix: `kbe-freeze-${uniqueSuffix()}:` });
      const registry = new Registry();
      const core: BillingCore = createBillingCore({
        store: new KnexBillingStore(knex),
        cache,
        logger: recordingLogger(),
        metrics: new BillingMetrics({ registry }),
      });
      const openReservations = async () => (await registry.getSingleMetric('billing_open_reservations')!.get()).values[0]?.value ?? 0;
      const userId = `freeze-${freezeMs}-${uniqueSuffix()}`;
      const subject = { user: { id: userId } };
      await core.admin.setBalance(userId, BALANCE);
      const outcomes = new Map<string, number>();
      let stop = false;
      const workers = Array.from({ length: WORKERS }, async () => {
        while (!stop) {
          const result = await core.check(subject, { estimateUsd: ESTIMATE });
          const outcome = !result.allowed
            ? 'denied'
            : !result.reservation
              ? 'unheld'
              : result.reservation.id.startsWith('store:')
                ? 'held in the store'
                : 'held';
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          await sleep(5);
          if (result.allowed) result.reservation?.release();
        }
      });
      await sleep(300);
      server.freeze();
      await sleep(freezeMs);
      server.thaw();
      await sleep(1500);
      stop = true;
      await Promise.all(workers);
      // Releases run in the background; let them land.
      await sleep(500);

      const orphans = [...(await cache.listLeases(userId)), ...(await knex('billing_store_holds').where({ user_id: userId }).select('id'))];
      const openAfter = await openReservations();
      const full = await core.check(subject, { estimateUsd: BALANCE });
      report(
        `${freezeMs} ms freeze: ${JSON.stringify([...outcomes])}; holds left without an owner: ${orphans.length}; ` +
          `reserve of the full balance afterwards: ${full.allowed ? 'allowed' : full.error.code}`,
      );
      expect(orphans).to.deep.equal([]);
      expect(openAfter, 'the open-holds metric agrees: nothing held').to.equal(0);
      expect(await openReservations(), 'and it counts the one now held').to.equal(1);
      expect(full.allowed).to.equal(true);
      expect(full.allowed && full.reservation, 'the full balance was held in the cache').to.not.equal(undefined);
      if (full.allowed) full.reservation?.release();
      expect(outcomes.get('held in the store') ?? 0, 'requests that met the freeze were held in the store').to.be.above(0);
      expect(outcomes.get('unheld') ?? 0, 'no request went without a hold').to.equal(0);
      await core.close();
      redis.disconnect();
    });
  }
});

// The example gateway over HTTP on PostgreSQL (its own schema) and Redis (its own key prefix), as deployed.
import knexFactory from 'knex';
import { deleteKeysWithPrefix, createRedisClient } from '../helpers/redis.js';
import { DATABASE_URL, REDIS_URL, requirePostgres, requireRedis, uniqueSuffix } from '../helpers/services.js';
import { accessScenarios } from './gateway-access-scenarios.js';
import { billingScenarios } from './gateway-billing-scenarios.js';
import { startHarness, type GatewayHarness } from './gateway-harness.js';

async function dropSchema(schema: string): Promise<void> {
  const knex = knexFactory({ client: 'pg', connection: DATABASE_URL, pool: { min: 0, max: 1 } });
  try {
    await knex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]);
  } finally {
    await knex.destroy();
  }
}

async function deleteRedisKeys(prefix: string): Promise<void> {
  const redis = createRedisClient();
  try {
    await deleteKeysWithPrefix(redis, prefix);
  } finally {
    redis.disconnect();
  }
}

describe('example gateway e2e: PostgreSQL + Redis', function () {
  let harness: GatewayHarness;

  before(async function () {
    await requirePostgres(this);
    await requireRedis(this);
    const suffix = uniqueSuffix();
    const schema = `kbe_e2e_${suffix}`;
    const prefix = `kbe-e2e-${suffix}:`;
    harness = await startHarness(
      { DATABASE_URL, DATABASE_SCHEMA: schema, REDIS_URL, REDIS_PREFIX: prefix },
      async () => {
        await dropSchema(schema);
        await deleteRedisKeys(prefix);
      },
    );
  });

  after(async () => {
    await harness?.close();
  });

  describe('billing', () => billingScenarios(() => harness));
  describe('access', () => accessScenarios(() => harness));
});

// The example gateway over HTTP on PostgreSQL (its own schema) and Redis (its own key prefix), as deployed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import knexFactory from 'knex';
import request from 'supertest';
import { createLogger } from '../../examples/proxy/logger.js';
import { createApp, loadConfig, type Gateway } from '../../examples/proxy/server.js';
import { deleteKeysWithPrefix, createRedisClient } from '../helpers/redis.js';
import { DATABASE_URL, REDIS_URL, requirePostgres, requireRedis, uniqueSuffix } from '../helpers/services.js';
import { accessScenarios } from './gateway-access-scenarios.js';
import { billingScenarios } from './gateway-billing-scenarios.js';
import { edgeScenarios } from './gateway-edge-scenarios.js';
import { limitScenarios } from './gateway-limit-scenarios.js';
import { meteringScenarios } from './gateway-metering-scenarios.js';
import { METERING_ENV, startHarness, type GatewayHarness } from './gateway-harness.js';

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
    harness = await startHarness({ DATABASE_URL, DATABASE_SCHEMA: schema, REDIS_URL, REDIS_PREFIX: prefix }, async () => {
      await dropSchema(schema);
      await deleteRedisKeys(prefix);
    });
  });

  after(async () => {
    await harness?.close();
  });

  describe('billing', () => billingScenarios(() => harness));
  describe('access', () => accessScenarios(() => harness));
  describe('limits', () => limitScenarios(() => harness));
  describe('edges', () => edgeScenarios(() => harness));
});

describe('example gateway e2e: live stream metering on PostgreSQL + Redis', function () {
  this.timeout(60_000);
  let harness: GatewayHarness;

  before(async function () {
    await requirePostgres(this);
    await requireRedis(this);
    const suffix = uniqueSuffix();
    const schema = `kbe_e2e_${suffix}`;
    const prefix = `kbe-e2e-${suffix}:`;
    harness = await startHarness({ DATABASE_URL, DATABASE_SCHEMA: schema, REDIS_URL, REDIS_PREFIX: prefix, ...METERING_ENV }, async () => {
      await dropSchema(schema);
      await deleteRedisKeys(prefix);
    });
  });

  after(async () => {
    await harness?.close();
  });

  meteringScenarios(() => harness);
});

describe('example gateway e2e: several processes starting on one empty PostgreSQL', function () {
  const schema = `kbe_e2e_${uniqueSuffix()}`;
  const dataDirs: string[] = [];
  const gateways: Gateway[] = [];

  before(async function () {
    await requirePostgres(this);
  });

  after(async () => {
    await Promise.all(gateways.map((gateway) => gateway.close()));
    for (const dir of dataDirs) fs.rmSync(dir, { recursive: true, force: true });
    await dropSchema(schema);
  });

  it('migrates and seeds once: one of them holds the demo keys, the others start normally', async () => {
    const starts = [0, 1, 2].map(async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbe-e2e-multi-'));
      dataDirs.push(dataDir);
      const config = loadConfig({ DATA_DIR: dataDir, DATABASE_URL, DATABASE_SCHEMA: schema, ADMIN_TOKEN: 'e2e-admin-token-0123456789abcdef' });
      const gateway = await createApp(config, { logger: createLogger('silent') });
      gateways.push(gateway);
      return gateway;
    });
    const started = await Promise.all(starts);
    const seeders = started.filter((gateway) => gateway.demoKeys.length > 0);
    expect(seeders).to.have.length(1);
    // Every process serves the keys the seeding one printed.
    const key = seeders[0]?.demoKeys.find((k) => k.userId === 'alice')?.key as string;
    for (const gateway of started) {
      await request(gateway.app.callback()).get('/v1/usage').set('Authorization', `Bearer ${key}`).expect(200);
    }
  });
});

describe('example gateway e2e: two processes sharing PostgreSQL and Redis', function () {
  const suffix = uniqueSuffix();
  const schema = `kbe_e2e_${suffix}`;
  const prefix = `kbe-e2e-${suffix}:`;
  const dataDirs: string[] = [];
  const gateways: Gateway[] = [];

  before(async function () {
    await requirePostgres(this);
    await requireRedis(this);
    for (let i = 0; i < 2; i++) {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbe-e2e-pair-'));
      dataDirs.push(dataDir);
      const config = loadConfig({
        DATA_DIR: dataDir,
        DATABASE_URL,
        DATABASE_SCHEMA: schema,
        REDIS_URL,
        REDIS_PREFIX: prefix,
        ADMIN_TOKEN: 'e2e-admin-token-0123456789abcdef',
      });
      // One after the other: the first migrates and seeds.
      gateways.push(await createApp(config, { logger: createLogger('silent') }));
    }
  });

  after(async () => {
    await Promise.all(gateways.map((gateway) => gateway.close()));
    for (const dir of dataDirs) fs.rmSync(dir, { recursive: true, force: true });
    await dropSchema(schema);
    await deleteRedisKeys(prefix);
  });

  it('a key disabled through one process is refused by the other at once, although both had its lookup cached', async () => {
    const [first, second] = gateways as [Gateway, Gateway];
    const key = first.demoKeys.find((k) => k.userId === 'alice')?.key as string;
    const usage = (gateway: Gateway) => request(gateway.app.callback()).get('/v1/usage').set('Authorization', `Bearer ${key}`);
    await usage(first).expect(200);
    await usage(second).expect(200);
    const admin = (enabled: boolean) =>
      request(first.app.callback())
        .put('/admin/keys/alice-key/limits')
        .set('Authorization', 'Bearer e2e-admin-token-0123456789abcdef')
        .send({ enabled })
        .expect(200);
    await admin(false);
    await usage(second).expect(401);
    await usage(first).expect(401);
    await admin(true);
    await usage(second).expect(200);
  });
});

// Opens what the gateway runs on: the database (embedded SQLite or PostgreSQL) and the billing cache
// (in-process memory, Redis or Redis Cluster), as the configuration says.
import fs from 'node:fs';
import path from 'node:path';
import { Cluster, Redis } from 'ioredis';
import knexFactory, { type Knex } from 'knex';
import {
  MemoryBillingCache,
  RedisBillingCache,
  recommendedClusterOptions,
  recommendedRedisOptions,
  type BillingCache,
  type ThrottledLog,
} from '../../lib/index.js';
import type { ProxyConfig } from './config.js';
import type { Logger } from './logger.js';

export const SQLITE_FILE = 'gateway.sqlite';

/**
 * A knex on the configured database; the PostgreSQL schema is created when it does not exist. knex's
 * own messages (one per failed connection attempt while the database is down) go to `log`, throttled.
 */
export async function openDatabase(config: ProxyConfig, log: ThrottledLog): Promise<Knex> {
  if (config.databaseUrl === null) {
    fs.mkdirSync(config.dataDir, { recursive: true });
    return knexFactory({
      client: 'better-sqlite3',
      connection: { filename: path.join(config.dataDir, SQLITE_FILE) },
      useNullAsDefault: true,
      // One connection: SQLite serialises writers anyway, and a second one would only wait on locks.
      pool: {
        min: 1,
        max: 1,
        afterCreate: (db: { pragma(source: string): unknown }, done: (err: Error | null, db: unknown) => void) => {
          db.pragma('journal_mode = WAL');
          db.pragma('busy_timeout = 5000');
          done(null, db);
        },
      },
    });
  }
  const schema = config.databaseSchema;
  const knex = knexFactory({
    client: 'pg',
    // Bounded waits: a silent PostgreSQL must turn into a quick 503 (and a breaker failure), not a hung request.
    connection: { connectionString: config.databaseUrl, connectionTimeoutMillis: 1000, query_timeout: 2000 },
    pool: { min: 0, max: 10 },
    acquireConnectionTimeout: 2000,
    ...(schema && { searchPath: [schema] }),
    log: {
      warn: (message: unknown) => log.warn('knex warning', { detail: String(message) }, 'database client warning'),
      error: (message: unknown) => log.error('knex error', { detail: String(message) }, 'database client error'),
      deprecate: () => {},
      debug: () => {},
    },
  });
  if (schema) {
    try {
      await knex.raw('CREATE SCHEMA IF NOT EXISTS ??', [schema]);
    } catch (err) {
      // Two processes creating it at the same moment: one loses the race on the catalog's unique index.
      if ((err as { code?: string }).code !== '23505') {
        await knex.destroy();
        throw err;
      }
    }
  }
  return knex;
}

export interface OpenedCache {
  cache: BillingCache;
  /** The Redis client the gateway owns (null for the memory cache); closed at shutdown. */
  client: Redis | Cluster | null;
}

/** The billing cache. A Redis that is down makes the library fall back to the store; it never fails a request by itself. */
export async function openCache(config: ProxyConfig, logger: Logger): Promise<OpenedCache> {
  // Fail fast (100 ms per command, no offline queue): a cache error is answered from the store,
  // so waiting on Redis helps nobody.
  let client: Redis | Cluster | null = null;
  if (config.redisClusterNodes) {
    client = new Cluster(config.redisClusterNodes, recommendedClusterOptions({ lazyConnect: true }));
  } else if (config.redisUrl) {
    client = new Redis(config.redisUrl, recommendedRedisOptions({ lazyConnect: true }));
  }
  if (!client) return { cache: new MemoryBillingCache({ maxEntries: 100_000 }), client: null };
  // Without an 'error' listener ioredis prints every reconnect failure; log them once per state change instead.
  let healthy = true;
  client.on('error', (err: Error) => {
    if (healthy) logger.warn({ err: { message: err.message } }, 'redis connection error; billing reads fall back to the store');
    healthy = false;
  });
  client.on('ready', () => {
    if (!healthy) logger.info('redis connection restored');
    healthy = true;
  });
  // Without an offline queue, commands sent before the connection is ready fail: connect first. A
  // Redis that is down at start is not fatal — requests are served from the store until it answers.
  await client
    .connect()
    .catch((err: Error) => logger.warn({ err: { message: err.message } }, 'redis not reachable at start; serving from the store until it is'));
  return { cache: new RedisBillingCache(client, { prefix: config.redisPrefix }), client };
}

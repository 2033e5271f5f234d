// Part two: settlements per second into PostgreSQL with the Redis cache updated after each commit, at
// 20 and 200 in flight, over 1,000 users and on one hot user, with group commit and with batch size 1,
// next to two references measured in the same run with a raw pg client on scratch tables of the same
// shape: one settlement per transaction (20 connections), and the ceiling — 50 settlements per
// transaction as one multi-row insert plus one multi-row update in key order (4 connections).
// Rounds take turns, so a noisy neighbour hits every configuration alike; figures are medians.
import type { Knex } from 'knex';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { Registry } from 'prom-client';
import { createBillingCore } from '../../lib/billing-core.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { BillingMetrics } from '../../lib/metrics.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { DATABASE_URL } from '../helpers/services.js';
import type { BenchConfig } from './config.js';
import { Samples, median, round } from './stats.js';
import { benchSubject, seedBenchUser } from './subject.js';

export interface SettleRun {
  label: string;
  users: number;
  concurrency: number;
  maxBatchSize: number;
  /** Medians over the rounds. */
  perSec: number;
  p50Ms: number;
  p99Ms: number;
  meanBatch: number;
  perRound: number[];
}

export interface SettleReference {
  label: string;
  connections: number;
  perTransaction: number;
  perSec: number;
  perRound: number[];
}

export interface SettleTarget {
  name: string;
  value: number;
  target: string;
  met: boolean;
}

export interface SettleResults {
  rounds: number;
  runs: SettleRun[];
  references: SettleReference[];
  targets: SettleTarget[];
}

/** Cost of one settlement: a small exact amount, like a short completion. */
const COST_USD = '0.00012345';
const SPREAD_USERS = 1000;
const CEILING_PER_TRANSACTION = 50;

interface RunShape {
  label: string;
  concurrency: number;
  hot: boolean;
  maxBatchSize: number;
}

const SHAPES: readonly RunShape[] = [
  { label: '200 in flight, 1,000 users', concurrency: 200, hot: false, maxBatchSize: 100 },
  { label: '200 in flight, one hot user', concurrency: 200, hot: true, maxBatchSize: 100 },
  { label: '20 in flight, 1,000 users', concurrency: 20, hot: false, maxBatchSize: 100 },
  { label: '20 in flight, one hot user', concurrency: 20, hot: true, maxBatchSize: 100 },
  { label: '200 in flight, 1,000 users, batch size 1', concurrency: 200, hot: false, maxBatchSize: 1 },
  { label: '20 in flight, 1,000 users, batch size 1', concurrency: 20, hot: false, maxBatchSize: 1 },
];

export async function runSettleBench(config: BenchConfig, knex: Knex, redis: Redis, redisPrefix: string, schema: string, rounds = 3): Promise<SettleResults> {
  const users = Array.from({ length: SPREAD_USERS }, (_, i) => `settle-user-${i}`);
  const seeder = createBillingCore({ store: new KnexBillingStore(knex), cache: new RedisBillingCache(redis, { prefix: redisPrefix }) });
  for (const user of users) await seedBenchUser(seeder, user);
  await seeder.close();
  const refs = await createReferenceTables(schema);
  let sequence = 0;
  const durationMs = config.settleDurationS * 1000;

  const measureRun = async (shape: RunShape): Promise<{ perSec: number; p50: number; p99: number; meanBatch: number }> => {
    const registry = new Registry();
    const core = createBillingCore({
      store: new KnexBillingStore(knex),
      cache: new RedisBillingCache(redis, { prefix: redisPrefix }),
      metrics: new BillingMetrics({ registry }),
      settlementBatching: { maxBatchSize: shape.maxBatchSize },
    });
    try {
      const latencies = new Samples();
      const deadline = performance.now() + durationMs;
      const startedAt = performance.now();
      const worker = async (w: number): Promise<void> => {
        let i = w;
        while (performance.now() < deadline) {
          const subject = benchSubject(shape.hot ? users[0]! : users[(i += shape.concurrency) % SPREAD_USERS]!);
          const t0 = performance.now();
          await core.settle({ requestId: `bench-${sequence++}`, subject, costUsd: COST_USD, model: 'bench-model', inputTokens: 100, outputTokens: 20 });
          latencies.push(performance.now() - t0);
        }
      };
      await Promise.all(Array.from({ length: shape.concurrency }, (_, w) => worker(w)));
      const elapsedS = (performance.now() - startedAt) / 1000;
      const [p50 = Number.NaN, p99 = Number.NaN] = latencies.percentiles(50, 99);
      const sizes = (await registry.getSingleMetric('billing_settlement_batch_size')!.get()).values as { metricName?: string; value: number }[];
      const count = sizes.find((v) => v.metricName === 'billing_settlement_batch_size_count')?.value ?? 0;
      const sum = sizes.find((v) => v.metricName === 'billing_settlement_batch_size_sum')?.value ?? 0;
      return { perSec: latencies.length / elapsedS, p50, p99, meanBatch: count > 0 ? sum / count : 1 };
    } finally {
      await core.close();
    }
  };

  const perShape = SHAPES.map(() => [] as { perSec: number; p50: number; p99: number; meanBatch: number }[]);
  const onePerTxn: number[] = [];
  const ceiling: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      onePerTxn.push(await refs.onePerTransaction(20, durationMs));
      ceiling.push(await refs.multiRow(4, CEILING_PER_TRANSACTION, durationMs));
      for (const [i, shape] of SHAPES.entries()) perShape[i]!.push(await measureRun(shape));
    }
  } finally {
    await refs.drop();
  }

  const runs: SettleRun[] = SHAPES.map((shape, i) => {
    const measured = perShape[i]!;
    return {
      label: shape.label,
      users: shape.hot ? 1 : SPREAD_USERS,
      concurrency: shape.concurrency,
      maxBatchSize: shape.maxBatchSize,
      perSec: Math.round(median(measured.map((m) => m.perSec))),
      p50Ms: round(median(measured.map((m) => m.p50)), 2),
      p99Ms: round(median(measured.map((m) => m.p99)), 2),
      meanBatch: round(median(measured.map((m) => m.meanBatch)), 1),
      perRound: measured.map((m) => Math.round(m.perSec)),
    };
  });
  const references: SettleReference[] = [
    {
      label: 'raw pg, one settlement per transaction',
      connections: 20,
      perTransaction: 1,
      perSec: Math.round(median(onePerTxn)),
      perRound: onePerTxn.map(Math.round),
    },
    {
      label: `raw pg, ${CEILING_PER_TRANSACTION} per transaction (multi-row), the ceiling`,
      connections: 4,
      perTransaction: CEILING_PER_TRANSACTION,
      perSec: Math.round(median(ceiling)),
      perRound: ceiling.map(Math.round),
    },
  ];
  const byLabel = (label: string) => runs.find((run) => run.label === label)!;
  const spread = byLabel(SHAPES[0]!.label);
  const hot = byLabel(SHAPES[1]!.label);
  const spread20 = byLabel(SHAPES[2]!.label);
  const unbatched = byLabel(SHAPES[4]!.label);
  const unbatched20 = byLabel(SHAPES[5]!.label);
  const ceilingPerSec = references[1]!.perSec;
  const target = (name: string, value: number, goal: number, targetText: string, atMost = false): SettleTarget => ({
    name,
    value: round(value, 2),
    target: targetText,
    met: atMost ? value <= goal : value >= goal,
  });
  return {
    rounds,
    runs,
    references,
    targets: [
      target('200 in flight, 1,000 users / ceiling', spread.perSec / ceilingPerSec, 0.5, '≥ 0.5'),
      target('one hot user / ceiling', hot.perSec / ceilingPerSec, 0.5, '≥ 0.5'),
      target('200 in flight, 1,000 users / batch size 1', spread.perSec / unbatched.perSec, 10, '≥ 10'),
      target('p99 at 20 in flight / batch size 1', spread20.p99Ms / unbatched20.p99Ms, 1, '≤ 1', true),
    ],
  };
}

/**
 * Scratch tables shaped like the store's (usage log with its unique key, accounts, key windows,
 * quotas, NUMERIC money) in the benchmark's schema, and the two reference loops over them.
 */
async function createReferenceTables(schema: string) {
  const connect = (max: number) => new pg.Pool({ connectionString: DATABASE_URL, max, options: `-c search_path=${schema}` });
  const setup = connect(1);
  await setup.query(`
    CREATE TABLE ref_log (id BIGSERIAL PRIMARY KEY, request_id TEXT NOT NULL, api_key_id TEXT NOT NULL, user_id TEXT NOT NULL, cost NUMERIC(20,8) NOT NULL,
      model TEXT, input_tokens BIGINT, output_tokens BIGINT, fingerprint TEXT NOT NULL, created_at_ms BIGINT NOT NULL, UNIQUE (request_id, api_key_id));
    CREATE TABLE ref_accounts (user_id TEXT PRIMARY KEY, balance NUMERIC(20,8) NOT NULL, version BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL);
    CREATE TABLE ref_key_windows (user_id TEXT, api_key_id TEXT, usage_5h NUMERIC(20,8) NOT NULL DEFAULT 0, version BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (user_id, api_key_id));
    CREATE TABLE ref_quotas (user_id TEXT, platform TEXT, daily_usage NUMERIC(20,8) NOT NULL DEFAULT 0, version BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (user_id, platform));
    INSERT INTO ref_accounts SELECT 'u' || i, 1000000, 1, 0 FROM generate_series(0, ${SPREAD_USERS - 1}) i;
    INSERT INTO ref_key_windows (user_id, api_key_id) SELECT 'u' || i, 'k' || i FROM generate_series(0, ${SPREAD_USERS - 1}) i;
    INSERT INTO ref_quotas (user_id, platform) SELECT 'u' || i, 'openai' FROM generate_series(0, ${SPREAD_USERS - 1}) i;
    ANALYZE ref_log, ref_accounts, ref_key_windows, ref_quotas;
  `);
  await setup.end();
  let sequence = 0;
  const loop = async (connections: number, durationMs: number, transaction: (client: pg.PoolClient) => Promise<number>): Promise<number> => {
    let settled = 0;
    const pool = connect(connections);
    const clients = await Promise.all(Array.from({ length: connections }, () => pool.connect()));
    const deadline = performance.now() + durationMs;
    const startedAt = performance.now();
    await Promise.all(
      clients.map(async (client) => {
        try {
          while (performance.now() < deadline) {
            try {
              // Not `settled += await …`: that reads `settled` before the wait, losing other workers' counts.
              const done = await transaction(client);
              settled += done;
            } catch (err) {
              await client.query('ROLLBACK');
              throw err;
            }
          }
        } finally {
          client.release();
        }
      }),
    );
    const perSec = settled / ((performance.now() - startedAt) / 1000);
    await pool.end();
    return perSec;
  };
  return {
    /** What the store does per settlement, one transaction each: the log row, then three row updates. */
    onePerTransaction: (connections: number, durationMs: number) =>
      loop(connections, durationMs, async (client) => {
        const user = `u${Math.floor(Math.random() * SPREAD_USERS)}`;
        const id = `one-${sequence++}`;
        await client.query('BEGIN');
        await client.query(
          `INSERT INTO ref_log (request_id, api_key_id, user_id, cost, model, input_tokens, output_tokens, fingerprint, created_at_ms)
        VALUES ($1, $2, $3, $4, 'bench-model', 100, 20, 'f', 0) ON CONFLICT (request_id, api_key_id) DO NOTHING RETURNING id`,
          [id, `k-${user}`, user, COST_USD],
        );
        await client.query('UPDATE ref_accounts SET balance = balance - $1, version = version + 1, updated_at_ms = 0 WHERE user_id = $2', [COST_USD, user]);
        await client.query('UPDATE ref_key_windows SET usage_5h = usage_5h + $1, version = version + 1 WHERE user_id = $2 AND api_key_id = $3', [
          COST_USD,
          user,
          `k${user.slice(1)}`,
        ]);
        await client.query(`UPDATE ref_quotas SET daily_usage = daily_usage + $1, version = version + 1 WHERE user_id = $2 AND platform = 'openai'`, [
          COST_USD,
          user,
        ]);
        await client.query('COMMIT');
        return 1;
      }),
    /** The ceiling: `perTransaction` settlements as one multi-row insert and one multi-row update in key order. */
    multiRow: (connections: number, perTransaction: number, durationMs: number) =>
      loop(connections, durationMs, async (client) => {
        const picked = new Set<number>();
        while (picked.size < perTransaction) picked.add(Math.floor(Math.random() * SPREAD_USERS));
        const userIds = [...picked].map((i) => `u${i}`).sort();
        const values = userIds.map((_, i) => `($${i * 3 + 1}, $${i * 3 + 2}, $${i * 3 + 3}, ${COST_USD}, 'bench-model', 100, 20, 'f', 0)`).join(', ');
        await client.query('BEGIN');
        await client.query(
          `INSERT INTO ref_log (request_id, api_key_id, user_id, cost, model, input_tokens, output_tokens, fingerprint, created_at_ms)
        VALUES ${values} ON CONFLICT (request_id, api_key_id) DO NOTHING RETURNING id`,
          userIds.flatMap((user) => [`multi-${sequence++}`, `k-${user}`, user]),
        );
        // The rows are locked in key order by the subquery (a join alone locks them in whatever order it
        // meets them, and two transactions would deadlock).
        await client.query(
          `UPDATE ref_accounts SET balance = balance - ${COST_USD}, version = version + 1, updated_at_ms = 0
        WHERE user_id IN (SELECT user_id FROM ref_accounts WHERE user_id = ANY($1::text[]) ORDER BY user_id FOR UPDATE)`,
          [userIds],
        );
        await client.query('COMMIT');
        return perTransaction;
      }),
    drop: async () => {
      const pool = connect(1);
      await pool.query('DROP TABLE IF EXISTS ref_log, ref_accounts, ref_key_windows, ref_quotas');
      await pool.end();
    },
  };
}

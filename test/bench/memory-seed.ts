// Bulk seeding for the memory run: a hundred thousand accounts and quota rows in a few batched
// INSERTs (the admin API commits two transactions per user, minutes for this many), then one user
// read back through the store, so a change of the table layout fails here instead of skewing the run.
import type { Knex } from 'knex';
import { parseUsd } from '../../lib/money.js';
import { BILLING_TABLES } from '../../lib/store/index.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { BENCH_PLATFORM, GENEROUS_LIMIT_USD } from './subject.js';

const ROWS_PER_INSERT = 500;

/** Seeds `users` accounts (`<prefix>0` …) with a large balance and a platform quota row, on SQLite. */
export async function seedUsersInBulk(knex: Knex, prefix: string, users: number): Promise<void> {
  // SQLite stores money as integer units of 1e-8 USD (lib/store/dialect.ts).
  const units = Number(parseUsd(GENEROUS_LIMIT_USD, 'seed'));
  const nowMs = Date.now();
  await knex.transaction(async (trx) => {
    for (let first = 0; first < users; first += ROWS_PER_INSERT) {
      const ids = Array.from({ length: Math.min(ROWS_PER_INSERT, users - first) }, (_, i) => `${prefix}${first + i}`);
      await trx(BILLING_TABLES.accounts).insert(ids.map((user_id) => ({ user_id, balance: units, version: 1, updated_at_ms: nowMs })));
      await trx(BILLING_TABLES.platformQuotas).insert(
        ids.map((user_id) => ({
          user_id,
          platform: BENCH_PLATFORM,
          daily_limit: units,
          weekly_limit: units,
          monthly_limit: units,
          daily_usage: 0,
          weekly_usage: 0,
          monthly_usage: 0,
          version: 1,
        })),
      );
    }
  });
  const store = new KnexBillingStore(knex);
  const balance = await store.getBalance(`${prefix}0`);
  const quota = await store.getPlatformQuota(`${prefix}0`, BENCH_PLATFORM);
  if (balance?.balance !== BigInt(units) || quota?.dailyLimit !== BigInt(units)) {
    throw new Error(
      `bulk seed does not read back through the store (balance ${String(balance?.balance)}, daily limit ${String(quota?.dailyLimit)}): update memory-seed.ts to the current table layout`,
    );
  }
}

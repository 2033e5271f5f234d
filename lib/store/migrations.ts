// migrateBillingSchema: the package's own knex migrations, idempotent and safe to run from several processes at once.
import type { Knex } from 'knex';
import { silentLogger } from '../log.js';
import { dialectOf } from './dialect.js';
import * as initial from './migration-001-initial.js';
import * as storeHolds from './migration-002-store-holds.js';
import { MIGRATIONS_TABLE } from './tables.js';
import { inTransaction, type RetryPolicy } from './transaction.js';

interface BillingMigration {
  name: string;
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

// Shipped inside the package (not files on disk), so bundling or a different cwd cannot lose them.
// Append only: a released migration is never edited or renamed.
const MIGRATIONS: readonly BillingMigration[] = Object.freeze([
  { name: '001-initial', up: initial.up, down: initial.down },
  { name: '002-store-holds', up: storeHolds.up, down: storeHolds.down },
]);

const source: Knex.MigrationSource<BillingMigration> = {
  getMigrations: async () => [...MIGRATIONS],
  getMigrationName: (migration) => migration.name,
  getMigration: async (migration) => migration,
};

const MIGRATION_RETRY: RetryPolicy = { attempts: 20, baseDelayMs: 20, logger: silentLogger };

// Arbitrary first key of the two-key advisory lock: "kbe" in ASCII. The second key is the schema.
const ADVISORY_LOCK_CLASS = 0x6b6265;

/**
 * Creates or updates the billing tables in the knex connection's current schema (PostgreSQL: the
 * first schema of its search path). Running it again is a no-op.
 */
export async function migrateBillingSchema(knex: Knex): Promise<void> {
  const dialect = dialectOf(knex);
  const config: Knex.MigratorConfig = { migrationSource: source, tableName: MIGRATIONS_TABLE };
  // One transaction for everything, including knex's bookkeeping tables: two processes that start
  // together would otherwise both create them (or both insert a lock row, which wedges knex's lock
  // for good). On PostgreSQL a transaction-scoped advisory lock per schema serializes the runs; the
  // second then finds nothing to do. SQLite serializes writers on the database file itself, but
  // may refuse a second writer outright (SQLITE_BUSY) instead of queueing it: that one retries.
  await inTransaction(knex, 'migrateBillingSchema', MIGRATION_RETRY, async (trx) => {
    if (dialect.name === 'postgresql') {
      await trx.raw("SELECT pg_advisory_xact_lock(?, hashtext(COALESCE(current_schema(), '')))", [ADVISORY_LOCK_CLASS]);
    }
    await trx.migrate.latest(config);
  });
}

/** Names of the package's migrations, oldest first (for diagnostics and tests). */
export function billingMigrationNames(): string[] {
  return MIGRATIONS.map((m) => m.name);
}

// The example's own tables (users, groups, hashed API keys), migrated beside the billing tables with their own
// knex migration table, so the two schemas evolve independently.
import type { Knex } from 'knex';

/*
 * USD limits and the rate multiplier are stored as exact decimal text: they are settings, never
 * summed in SQL, and SQLite has no exact decimal type (a REAL column would round them).
 */
const MIGRATIONS: Record<string, Knex.Migration> = {
  '001_gateway_tables': {
    async up(knex) {
      await knex.schema.createTable('gateway_groups', (table) => {
        table.string('id', 32).primary();
        table.string('name', 100).notNullable();
        table.string('billing_type', 16).notNullable();
        table.string('rate_multiplier', 32).notNullable().defaultTo('1');
        table.string('daily_limit_usd', 32).nullable();
        table.string('weekly_limit_usd', 32).nullable();
        table.string('monthly_limit_usd', 32).nullable();
        table.integer('rpm_limit').notNullable().defaultTo(0);
        table.bigInteger('created_at_ms').notNullable();
      });
      await knex.schema.createTable('gateway_users', (table) => {
        table.string('id', 32).primary();
        table.string('name', 100).notNullable();
        table.string('group_id', 32).nullable().references('id').inTable('gateway_groups');
        table.integer('rpm_limit').notNullable().defaultTo(0);
        table.bigInteger('created_at_ms').notNullable();
      });
      await knex.schema.createTable('gateway_api_keys', (table) => {
        table.string('id', 32).primary();
        table.string('user_id', 32).notNullable().references('id').inTable('gateway_users');
        table.string('key_hash', 64).notNullable().unique();
        table.string('label', 16).notNullable();
        table.string('name', 100).notNullable();
        table.boolean('enabled').notNullable().defaultTo(true);
        table.string('rate_limit_5h_usd', 32).nullable();
        table.string('rate_limit_1d_usd', 32).nullable();
        table.string('rate_limit_7d_usd', 32).nullable();
        table.bigInteger('created_at_ms').notNullable();
        table.index(['user_id']);
      });
    },
    async down(knex) {
      await knex.schema.dropTableIfExists('gateway_api_keys');
      await knex.schema.dropTableIfExists('gateway_users');
      await knex.schema.dropTableIfExists('gateway_groups');
    },
  },
  '002_user_max_concurrency': {
    async up(knex) {
      await knex.schema.alterTable('gateway_users', (table) => {
        table.integer('max_concurrency').notNullable().defaultTo(0);
      });
    },
    async down(knex) {
      await knex.schema.alterTable('gateway_users', (table) => {
        table.dropColumn('max_concurrency');
      });
    },
  },
};

const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(MIGRATIONS).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => {
    const migration = MIGRATIONS[name];
    if (!migration) throw new Error(`unknown gateway migration ${name}`);
    return migration;
  },
};

// First key of the advisory lock that serializes concurrent migrations: "kgw" in ASCII.
const ADVISORY_LOCK_CLASS = 0x6b6777;

/**
 * Creates or updates the gateway tables; idempotent. Several processes starting at once on one
 * PostgreSQL database run it one after another (a transaction-scoped advisory lock per schema):
 * knex's own migration lock would make the second one fail instead of wait.
 */
export async function migrateGatewaySchema(knex: Knex): Promise<void> {
  const config: Knex.MigratorConfig = { migrationSource, tableName: 'gateway_knex_migrations' };
  await knex.transaction(async (trx) => {
    if (['pg', 'postgres', 'postgresql'].includes(String(knex.client.config.client))) {
      await trx.raw("SELECT pg_advisory_xact_lock(?, hashtext(COALESCE(current_schema(), '')))", [ADVISORY_LOCK_CLASS]);
    }
    await trx.migrate.latest(config);
  });
}

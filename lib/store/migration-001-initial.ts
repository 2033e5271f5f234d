// Migration 001: every table of the billing store. Money is NUMERIC(20,8) on PostgreSQL and INTEGER units of 1e-8 USD on SQLite.
import type { Knex } from 'knex';
import { dialectOf } from './dialect.js';
import { TABLES } from './tables.js';

const ID_LENGTH = 64;
const SUBSCRIPTION_STATUSES = ['active', 'expired', 'revoked', 'suspended'];

export async function up(knex: Knex): Promise<void> {
  const exact = dialectOf(knex).name === 'postgresql';
  // SQLite has no exact decimal: its NUMERIC affinity would store 0.1 as a double.
  const money = (t: Knex.CreateTableBuilder, name: string) => (exact ? t.decimal(name, 20, 8) : t.bigInteger(name));
  const version = (t: Knex.CreateTableBuilder) => t.bigInteger('version').notNullable().defaultTo(0);

  await knex.schema.createTable(TABLES.accounts, (t) => {
    t.string('user_id', ID_LENGTH).primary();
    money(t, 'balance').notNullable().defaultTo(0);
    version(t);
    t.bigInteger('updated_at_ms').notNullable();
  });

  await knex.schema.createTable(TABLES.subscriptions, (t) => {
    t.bigIncrements('id');
    t.string('user_id', ID_LENGTH).notNullable();
    t.string('group_id', ID_LENGTH).notNullable();
    t.string('status', 16).notNullable().checkIn(SUBSCRIPTION_STATUSES);
    t.bigInteger('starts_at_ms').notNullable();
    t.bigInteger('expires_at_ms').notNullable();
    for (const w of ['daily', 'weekly', 'monthly']) {
      money(t, `${w}_usage`).notNullable().defaultTo(0);
      t.bigInteger(`${w}_start_ms`).nullable();
    }
    version(t);
    t.unique(['user_id', 'group_id']);
  });

  await knex.schema.createTable(TABLES.apiKeyWindows, (t) => {
    t.string('user_id', ID_LENGTH).notNullable();
    t.string('api_key_id', ID_LENGTH).notNullable();
    for (const w of ['5h', '1d', '7d']) {
      money(t, `usage_${w}`).notNullable().defaultTo(0);
      t.bigInteger(`start_${w}_ms`).nullable();
    }
    version(t);
    t.primary(['user_id', 'api_key_id']);
  });

  await knex.schema.createTable(TABLES.platformQuotas, (t) => {
    t.string('user_id', ID_LENGTH).notNullable();
    t.string('platform', 32).notNullable();
    // Limits: NULL = unlimited, 0 = fully blocked (docs/behaviour.md#platform-quota).
    for (const w of ['daily', 'weekly', 'monthly']) {
      money(t, `${w}_limit`).nullable();
      money(t, `${w}_usage`).notNullable().defaultTo(0);
      t.bigInteger(`${w}_start_ms`).nullable();
    }
    version(t);
    t.primary(['user_id', 'platform']);
  });

  await knex.schema.createTable(TABLES.rpmOverrides, (t) => {
    t.string('user_id', ID_LENGTH).notNullable();
    t.string('group_id', ID_LENGTH).notNullable();
    t.integer('rpm_limit').nullable();
    version(t);
    t.primary(['user_id', 'group_id']);
  });

  await knex.schema.createTable(TABLES.usageLog, (t) => {
    t.bigIncrements('id');
    t.string('request_id', 128).notNullable();
    // '' when the request had no key, so that the unique constraint also deduplicates those.
    t.string('api_key_id', ID_LENGTH).notNullable().defaultTo('');
    t.string('user_id', ID_LENGTH).notNullable();
    t.string('group_id', ID_LENGTH).nullable();
    t.string('mode', 16).notNullable();
    money(t, 'cost').notNullable();
    t.string('platform', 32).nullable();
    t.string('model', 128).nullable();
    t.bigInteger('input_tokens').nullable();
    t.bigInteger('output_tokens').nullable();
    t.string('fingerprint', 64).notNullable();
    t.bigInteger('created_at_ms').notNullable();
    t.unique(['request_id', 'api_key_id']);
    t.index(['user_id', 'created_at_ms']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of Object.values(TABLES).reverse()) await knex.schema.dropTableIfExists(table);
}

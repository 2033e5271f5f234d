// Migration 002: reservations held in the store while the cache is unreachable (docs/holds.md). Each
// limited row gets the sum of the store holds on it (`held`), and every hold gets a row of its own,
// so a release or an expiry takes back exactly what that hold added.
import type { Knex } from 'knex';
import { dialectOf } from './dialect.js';
import { TABLES } from './tables.js';

export const HELD_TABLES = [TABLES.accounts, TABLES.subscriptions, TABLES.apiKeyWindows, TABLES.platformQuotas] as const;

export async function up(knex: Knex): Promise<void> {
  const exact = dialectOf(knex).name === 'postgresql';
  const money = (t: Knex.CreateTableBuilder, name: string) => (exact ? t.decimal(name, 20, 8) : t.bigInteger(name));
  for (const table of HELD_TABLES) {
    await knex.schema.alterTable(table, (t) => {
      money(t, 'held').notNullable().defaultTo(0);
    });
  }
  await knex.schema.createTable(TABLES.storeHolds, (t) => {
    // The reservation's lease id: a hold is created once, released once.
    t.string('id', 128).primary();
    t.string('user_id', 64).notNullable();
    money(t, 'amount').notNullable();
    // JSON list of the rows the hold was added to (entity refs), in the order they were locked.
    t.text('targets').notNullable();
    t.bigInteger('expires_at_ms').notNullable();
    t.bigInteger('created_at_ms').notNullable();
    t.index(['expires_at_ms']);
    t.index(['user_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists(TABLES.storeHolds);
  for (const table of HELD_TABLES) {
    await knex.schema.alterTable(table, (t) => {
      t.dropColumn('held');
    });
  }
}

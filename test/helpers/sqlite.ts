// A knex on SQLite for store tests: in memory by default (one connection, so one database), or a file.
import knexFactory, { type Knex } from 'knex';
import { migrateBillingSchema } from '../../lib/store/migrations.js';

/** A fresh SQLite database; migrated unless `migrate: false`. Destroy the knex when done. */
export async function createSqliteKnex(options: { filename?: string; migrate?: boolean } = {}): Promise<Knex> {
  const knex = knexFactory({
    client: 'better-sqlite3',
    connection: { filename: options.filename ?? ':memory:' },
    useNullAsDefault: true,
    // ':memory:' is per connection: a second pooled connection would see an empty database.
    pool: { min: 1, max: 1 },
  });
  if (options.migrate !== false) await migrateBillingSchema(knex);
  return knex;
}

// Isolated PostgreSQL schemas for store tests: each run gets its own schema on the shared server and drops only that.
import knexFactory, { type Knex } from 'knex';
import { migrateBillingSchema } from '../../lib/store/migrations.js';
import { DATABASE_URL, uniqueSuffix } from './services.js';

/** A knex whose connections all resolve unqualified tables in `schema`. */
export function pgKnex(schema: string, poolMax = 4): Knex {
  return knexFactory({
    client: 'pg',
    connection: DATABASE_URL,
    searchPath: [schema],
    pool: { min: 0, max: poolMax },
  });
}

export interface PgSchema {
  readonly schema: string;
  readonly knex: Knex;
  /** Closes the knex and drops the schema with everything in it. */
  destroy(): Promise<void>;
}

/** Creates a uniquely named schema and a knex bound to it; migrated unless `migrate: false`. */
export async function createPgSchema(options: { poolMax?: number; migrate?: boolean } = {}): Promise<PgSchema> {
  const schema = `kbe_test_${uniqueSuffix()}`;
  const admin = knexFactory({ client: 'pg', connection: DATABASE_URL, pool: { min: 0, max: 1 } });
  try {
    await admin.raw('CREATE SCHEMA ??', [schema]);
  } finally {
    await admin.destroy();
  }
  const knex = pgKnex(schema, options.poolMax);
  const destroy = async () => {
    await knex.destroy();
    const cleaner = knexFactory({ client: 'pg', connection: DATABASE_URL, pool: { min: 0, max: 1 } });
    try {
      await cleaner.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]);
    } finally {
      await cleaner.destroy();
    }
  };
  if (options.migrate !== false) {
    try {
      await migrateBillingSchema(knex);
    } catch (err) {
      await destroy();
      throw err;
    }
  }
  return { schema, knex, destroy };
}

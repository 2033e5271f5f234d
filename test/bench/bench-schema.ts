// The benchmark's own PostgreSQL schema, named kbe_bench_<suffix> so a run that was killed leaves
// something recognisable as the benchmark's (test schemas are kbe_test_*) and safe to drop by hand.
import knexFactory from 'knex';
import { migrateBillingSchema } from '../../lib/store/migrations.js';
import { pgKnex } from '../helpers/postgres.js';
import { DATABASE_URL, uniqueSuffix } from '../helpers/services.js';

export interface BenchSchema {
  readonly schema: string;
  /** Drops the schema and everything in it. */
  drop(): Promise<void>;
}

async function admin<T>(work: (knex: knexFactory.Knex) => Promise<T>): Promise<T> {
  const knex = knexFactory({ client: 'pg', connection: DATABASE_URL, pool: { min: 0, max: 1 } });
  try {
    return await work(knex);
  } finally {
    await knex.destroy();
  }
}

/** Creates and migrates a fresh schema. */
export async function createBenchSchema(): Promise<BenchSchema> {
  const schema = `kbe_bench_${uniqueSuffix()}`;
  const drop = () => admin((knex) => knex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema])).then(() => undefined);
  await admin((knex) => knex.raw('CREATE SCHEMA ??', [schema]));
  const knex = pgKnex(schema, 1);
  try {
    await migrateBillingSchema(knex);
  } catch (err) {
    await knex.destroy();
    await drop();
    throw err;
  }
  await knex.destroy();
  return { schema, drop };
}

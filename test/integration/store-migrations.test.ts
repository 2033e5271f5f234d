// migrateBillingSchema on both databases: idempotent, safe when several processes run it at once, exact money column types.
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { migrateBillingSchema } from '../../lib/store/migrations.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { createPgSchema, pgKnex, type PgSchema } from '../helpers/postgres.js';
import { requirePostgres } from '../helpers/services.js';
import { createSqliteKnex } from '../helpers/sqlite.js';

const TABLES = [
  'billing_accounts',
  'billing_api_key_windows',
  'billing_platform_quotas',
  'billing_rpm_overrides',
  'billing_subscriptions',
  'billing_usage_log',
  'billing_store_holds',
];
const MIGRATIONS = ['001-initial', '002-store-holds'];
const MONEY_COLUMNS = [
  'billing_accounts.balance',
  'billing_usage_log.cost',
  'billing_platform_quotas.daily_limit',
  'billing_subscriptions.monthly_usage',
  'billing_api_key_windows.usage_7d',
  'billing_accounts.held',
  'billing_store_holds.amount',
];

describe('migrateBillingSchema', function () {
  describe('SQLite', () => {
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbe-store-'));
    });
    after(() => {
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('three connections migrating one database file at once all succeed, and money columns are INTEGER units', async () => {
      const filename = path.join(dir, 'billing.sqlite');
      const knexes = await Promise.all([1, 2, 3].map(() => createSqliteKnex({ filename, migrate: false })));
      try {
        await Promise.all(knexes.map((knex) => migrateBillingSchema(knex)));
        const [first] = knexes;
        const tables = await first!('sqlite_master').where({ type: 'table' }).pluck('name');
        expect(tables).to.include.members([...TABLES, 'billing_knex_migrations', 'billing_knex_migrations_lock']);
        expect(await first!('billing_knex_migrations').pluck('name')).to.deep.equal(MIGRATIONS);
        for (const column of MONEY_COLUMNS) {
          const [table, name] = column.split('.') as [string, string];
          const info: { name: string; type: string }[] = await first!.raw(`PRAGMA table_info(${table})`);
          expect(info.find((c) => c.name === name)?.type, column).to.match(/^bigint$/i);
        }
      } finally {
        await Promise.all(knexes.map((knex) => knex.destroy()));
      }
    });
  });

  describe('PostgreSQL', () => {
    let pg: PgSchema | undefined;
    before(async function () {
      await requirePostgres(this);
      pg = await createPgSchema({ migrate: false });
    });
    after(async () => {
      await pg?.destroy();
    });

    it('four processes migrating one fresh schema at once all succeed, once, inside that schema only', async () => {
      const { schema } = pg!;
      const others = [1, 2, 3, 4].map(() => pgKnex(schema, 2));
      try {
        await Promise.all(others.map((knex) => migrateBillingSchema(knex)));
        await migrateBillingSchema(pg!.knex);
      } finally {
        await Promise.all(others.map((knex) => knex.destroy()));
      }
      const { knex } = pg!;
      expect(await knex('billing_knex_migrations').pluck('name')).to.deep.equal(MIGRATIONS);
      const tables = await knex('information_schema.tables').where({ table_schema: schema }).pluck('table_name');
      expect(tables).to.include.members(TABLES);
      // The tables of this run exist in its schema and nowhere else that search_path could reach.
      const publicOnes = await knex('information_schema.tables').where({ table_schema: 'public', table_name: 'billing_knex_migrations' }).pluck('table_name');
      expect(publicOnes).to.deep.equal([]);
    });

    it('stores money as NUMERIC(20,8) and reads back 20-digit precision exactly', async () => {
      const { knex, schema } = pg!;
      for (const column of MONEY_COLUMNS) {
        const [table, name] = column.split('.') as [string, string];
        const [info] = await knex('information_schema.columns')
          .where({ table_schema: schema, table_name: table, column_name: name })
          .select('data_type', 'numeric_precision', 'numeric_scale');
        expect(info, column).to.deep.equal({ data_type: 'numeric', numeric_precision: 20, numeric_scale: 8 });
      }
      const store = new KnexBillingStore(knex);
      // 2^53−1 units: a double would round the last digit of 90071992.54740991.
      await store.setBalance('exact', 9_007_199_254_740_991n);
      const [row] = await knex('billing_accounts').where({ user_id: 'exact' }).select('balance');
      expect(row.balance).to.equal('90071992.54740991');
      expect(await store.getBalance('exact')).to.deep.equal({ version: 1, balance: 9_007_199_254_740_991n });
    });
  });
});

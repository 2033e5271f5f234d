// Runs the BillingStore contract against the real PostgreSQL server, in a schema of its own that it drops afterwards.
import { createPgSchema } from '../helpers/postgres.js';
import { requirePostgres } from '../helpers/services.js';
import { defineStoreContract } from './store-contract.js';

describe('KnexBillingStore contract: PostgreSQL', function () {
  before(async function () {
    await requirePostgres(this);
  });

  defineStoreContract(async () => {
    const pg = await createPgSchema();
    return { knex: pg.knex, destroy: pg.destroy };
  });
});

// Runs the BillingStore contract against SQLite (in memory, always available).
import { createSqliteKnex } from '../helpers/sqlite.js';
import { defineStoreContract } from './store-contract.js';

describe('KnexBillingStore contract: SQLite', function () {
  defineStoreContract(async () => {
    const knex = await createSqliteKnex();
    return { knex, destroy: () => knex.destroy() };
  });
});

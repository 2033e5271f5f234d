// The store's public surface, re-exported by the package barrel.
export { KnexBillingStore, type KnexBillingStoreOptions } from './knex-store.js';
export { migrateBillingSchema, billingMigrationNames } from './migrations.js';
export { BillingStoreError, SettlementConflictError, SettlementTargetMissingError, StoreDataError, type BillingStoreErrorCode } from './store-errors.js';
export { TABLES as BILLING_TABLES, MIGRATIONS_TABLE as BILLING_MIGRATIONS_TABLE } from './tables.js';

// The package's table names, in one place: the migrations create them and the store's SQL uses them.

export const TABLES = Object.freeze({
  accounts: 'billing_accounts',
  subscriptions: 'billing_subscriptions',
  apiKeyWindows: 'billing_api_key_windows',
  platformQuotas: 'billing_platform_quotas',
  rpmOverrides: 'billing_rpm_overrides',
  usageLog: 'billing_usage_log',
  storeHolds: 'billing_store_holds',
});

/** knex's migration bookkeeping for this package (its lock table is this name + '_lock'). */
export const MIGRATIONS_TABLE = 'billing_knex_migrations';

// Database rows → the versioned entities of lib/types.ts, checking every value on the way.
import type { ApiKeyWindowsEntity, BalanceEntity, BillingMode, PlatformQuotaEntity, SubscriptionEntity, SubscriptionStatus, UsageLogRow } from '../types.js';
import { decodeInteger, decodeIntegerOrNull, decodeString, type Dialect } from './dialect.js';
import { StoreDataError } from './store-errors.js';
import { TABLES } from './tables.js';

export type Row = Record<string, unknown>;

const STATUSES: ReadonlySet<string> = new Set<SubscriptionStatus>(['active', 'expired', 'revoked', 'suspended']);
const MODES: ReadonlySet<string> = new Set<BillingMode>(['balance', 'subscription']);

/** Column reader for one table: names in errors say where a bad value sits. */
function reader(d: Dialect, table: string, row: Row) {
  const at = (column: string) => `${table}.${column}`;
  return {
    money: (column: string) => d.decodeMoney(row[column], at(column)),
    moneyOrNull: (column: string) => (row[column] === null ? null : d.decodeMoney(row[column], at(column))),
    int: (column: string) => decodeInteger(row[column], at(column)),
    intOrNull: (column: string) => decodeIntegerOrNull(row[column], at(column)),
    str: (column: string) => decodeString(row[column], at(column)),
    strOrNull: (column: string) => (row[column] === null ? null : decodeString(row[column], at(column))),
    oneOf<T extends string>(column: string, allowed: ReadonlySet<string>): T {
      const value = decodeString(row[column], at(column));
      if (!allowed.has(value)) throw new StoreDataError(at(column), `unexpected value ${JSON.stringify(value)}`);
      return value as T;
    },
  };
}

/** The `held` column as the entities carry it: the property only when some amount is held (docs/holds.md). */
function withHeld<T extends object>(entity: T, r: ReturnType<typeof reader>): T & { held?: bigint } {
  const held = r.money('held');
  return held === 0n ? entity : { ...entity, held };
}

export function toBalance(d: Dialect, row: Row): BalanceEntity {
  const r = reader(d, TABLES.accounts, row);
  return withHeld({ version: r.int('version'), balance: r.money('balance') }, r);
}

export function toSubscription(d: Dialect, row: Row): SubscriptionEntity {
  const r = reader(d, TABLES.subscriptions, row);
  return withHeld(
    {
      version: r.int('version'),
      subscriptionId: String(r.int('id')),
      status: r.oneOf<SubscriptionStatus>('status', STATUSES),
      startsAtMs: r.int('starts_at_ms'),
      expiresAtMs: r.int('expires_at_ms'),
      dailyUsage: r.money('daily_usage'),
      weeklyUsage: r.money('weekly_usage'),
      monthlyUsage: r.money('monthly_usage'),
      dailyStartMs: r.intOrNull('daily_start_ms'),
      weeklyStartMs: r.intOrNull('weekly_start_ms'),
      monthlyStartMs: r.intOrNull('monthly_start_ms'),
    },
    r,
  );
}

/** A key that was never used has no row: it reads as version 0, zero usage, null starts. */
export const EMPTY_API_KEY_WINDOWS: Readonly<ApiKeyWindowsEntity> = Object.freeze({
  version: 0,
  usage5h: 0n,
  usage1d: 0n,
  usage7d: 0n,
  start5hMs: null,
  start1dMs: null,
  start7dMs: null,
});

export function toApiKeyWindows(d: Dialect, row: Row | undefined): ApiKeyWindowsEntity {
  if (row === undefined) return { ...EMPTY_API_KEY_WINDOWS };
  const r = reader(d, TABLES.apiKeyWindows, row);
  return withHeld(
    {
      version: r.int('version'),
      usage5h: r.money('usage_5h'),
      usage1d: r.money('usage_1d'),
      usage7d: r.money('usage_7d'),
      start5hMs: r.intOrNull('start_5h_ms'),
      start1dMs: r.intOrNull('start_1d_ms'),
      start7dMs: r.intOrNull('start_7d_ms'),
    },
    r,
  );
}

export function toPlatformQuota(d: Dialect, row: Row): PlatformQuotaEntity {
  const r = reader(d, TABLES.platformQuotas, row);
  return withHeld(
    {
      version: r.int('version'),
      sentinel: false,
      dailyLimit: r.moneyOrNull('daily_limit'),
      weeklyLimit: r.moneyOrNull('weekly_limit'),
      monthlyLimit: r.moneyOrNull('monthly_limit'),
      dailyUsage: r.money('daily_usage'),
      weeklyUsage: r.money('weekly_usage'),
      monthlyUsage: r.money('monthly_usage'),
      dailyStartMs: r.intOrNull('daily_start_ms'),
      weeklyStartMs: r.intOrNull('weekly_start_ms'),
      monthlyStartMs: r.intOrNull('monthly_start_ms'),
    },
    r,
  );
}

export function toRpmOverride(row: Row | undefined): number | null {
  if (row === undefined) return null;
  return decodeIntegerOrNull(row.rpm_limit, `${TABLES.rpmOverrides}.rpm_limit`);
}

export function toUsageLogRow(d: Dialect, row: Row): UsageLogRow {
  const r = reader(d, TABLES.usageLog, row);
  return {
    requestId: r.str('request_id'),
    apiKeyId: r.str('api_key_id'),
    userId: r.str('user_id'),
    groupId: r.strOrNull('group_id'),
    mode: r.oneOf<BillingMode>('mode', MODES),
    costUnits: r.money('cost'),
    platform: r.strOrNull('platform'),
    model: r.strOrNull('model'),
    inputTokens: r.intOrNull('input_tokens'),
    outputTokens: r.intOrNull('output_tokens'),
    createdAtMs: r.int('created_at_ms'),
  };
}

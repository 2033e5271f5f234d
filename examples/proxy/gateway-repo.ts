// Reads and writes of the gateway tables: users, groups and hashed API keys (no billing state lives here).
import type { Knex } from 'knex';

export type BillingType = 'standard' | 'subscription';

export interface GroupRecord {
  id: string;
  name: string;
  billingType: BillingType;
  /** Exact decimal, e.g. "1" or "0.85". */
  rateMultiplier: string;
  /** Group spend limits of subscription plans, exact decimals; null = none. */
  dailyLimitUsd: string | null;
  weeklyLimitUsd: string | null;
  monthlyLimitUsd: string | null;
  /** Requests per minute per user within the group; 0 = none. */
  rpmLimit: number;
}

export interface UserRecord {
  id: string;
  name: string;
  groupId: string | null;
  /** Requests per minute for the user overall; 0 = none. */
  rpmLimit: number;
  /** Requests of the user in flight at once; 0 = none. */
  maxConcurrency: number;
}

export interface KeyLimits {
  rateLimit5hUsd: string | null;
  rateLimit1dUsd: string | null;
  rateLimit7dUsd: string | null;
}

export interface KeyRecord extends KeyLimits {
  id: string;
  userId: string;
  /** Non-secret prefix for listings, e.g. "sk-AbC1…". */
  label: string;
  name: string;
  enabled: boolean;
}

/** Who a key belongs to, resolved in one query at authentication. */
export interface Principal {
  key: KeyRecord;
  user: UserRecord;
  group: GroupRecord | null;
}

type Row = Record<string, unknown>;

const str = (value: unknown): string => String(value);
const nullableStr = (value: unknown): string | null => (value === null || value === undefined ? null : String(value));
const int = (value: unknown): number => Number(value ?? 0);
// SQLite returns booleans as 0/1, PostgreSQL as true/false.
const bool = (value: unknown): boolean => value === true || value === 1 || value === '1';

function groupFrom(row: Row, prefix = ''): GroupRecord {
  return {
    id: str(row[`${prefix}id`]),
    name: str(row[`${prefix}name`]),
    billingType: row[`${prefix}billing_type`] === 'subscription' ? 'subscription' : 'standard',
    rateMultiplier: str(row[`${prefix}rate_multiplier`]),
    dailyLimitUsd: nullableStr(row[`${prefix}daily_limit_usd`]),
    weeklyLimitUsd: nullableStr(row[`${prefix}weekly_limit_usd`]),
    monthlyLimitUsd: nullableStr(row[`${prefix}monthly_limit_usd`]),
    rpmLimit: int(row[`${prefix}rpm_limit`]),
  };
}

function userFrom(row: Row, prefix = ''): UserRecord {
  return {
    id: str(row[`${prefix}id`]),
    name: str(row[`${prefix}name`]),
    groupId: nullableStr(row[`${prefix}group_id`]),
    rpmLimit: int(row[`${prefix}rpm_limit`]),
    maxConcurrency: int(row[`${prefix}max_concurrency`]),
  };
}

function keyFrom(row: Row, prefix = ''): KeyRecord {
  return {
    id: str(row[`${prefix}id`]),
    userId: str(row[`${prefix}user_id`]),
    label: str(row[`${prefix}label`]),
    name: str(row[`${prefix}name`]),
    enabled: bool(row[`${prefix}enabled`]),
    rateLimit5hUsd: nullableStr(row[`${prefix}rate_limit_5h_usd`]),
    rateLimit1dUsd: nullableStr(row[`${prefix}rate_limit_1d_usd`]),
    rateLimit7dUsd: nullableStr(row[`${prefix}rate_limit_7d_usd`]),
  };
}

/** Column lists aliased "<table>__<column>" so one joined row splits back into its records. */
function aliased(alias: string, columns: string[]): string[] {
  return columns.map((column) => `${alias}.${column} as ${alias}__${column}`);
}

const GROUP_COLUMNS = ['id', 'name', 'billing_type', 'rate_multiplier', 'daily_limit_usd', 'weekly_limit_usd', 'monthly_limit_usd', 'rpm_limit'];
const USER_COLUMNS = ['id', 'name', 'group_id', 'rpm_limit', 'max_concurrency'];
const KEY_COLUMNS = ['id', 'user_id', 'label', 'name', 'enabled', 'rate_limit_5h_usd', 'rate_limit_1d_usd', 'rate_limit_7d_usd'];

export class GatewayRepository {
  constructor(private readonly knex: Knex) {}

  async isEmpty(): Promise<boolean> {
    const row = await this.knex('gateway_users').first('id');
    return row === undefined;
  }

  /** The key, its user and the user's group, or null when no key has this hash. */
  async findPrincipalByKeyHash(keyHash: string): Promise<Principal | null> {
    const row: Row | undefined = await this.knex('gateway_api_keys as k')
      .join('gateway_users as u', 'u.id', 'k.user_id')
      .leftJoin('gateway_groups as g', 'g.id', 'u.group_id')
      .where('k.key_hash', keyHash)
      .first([...aliased('k', KEY_COLUMNS), ...aliased('u', USER_COLUMNS), ...aliased('g', GROUP_COLUMNS)]);
    if (!row) return null;
    return {
      key: keyFrom(row, 'k__'),
      user: userFrom(row, 'u__'),
      group: row.g__id === null || row.g__id === undefined ? null : groupFrom(row, 'g__'),
    };
  }

  async getUser(id: string): Promise<UserRecord | null> {
    const row: Row | undefined = await this.knex('gateway_users').where({ id }).first(USER_COLUMNS);
    return row ? userFrom(row) : null;
  }

  async getGroup(id: string): Promise<GroupRecord | null> {
    const row: Row | undefined = await this.knex('gateway_groups').where({ id }).first(GROUP_COLUMNS);
    return row ? groupFrom(row) : null;
  }

  async getKey(id: string): Promise<KeyRecord | null> {
    const row: Row | undefined = await this.knex('gateway_api_keys').where({ id }).first(KEY_COLUMNS);
    return row ? keyFrom(row) : null;
  }

  async insertGroup(group: GroupRecord, nowMs: number): Promise<void> {
    await this.knex('gateway_groups').insert({
      id: group.id,
      name: group.name,
      billing_type: group.billingType,
      rate_multiplier: group.rateMultiplier,
      daily_limit_usd: group.dailyLimitUsd,
      weekly_limit_usd: group.weeklyLimitUsd,
      monthly_limit_usd: group.monthlyLimitUsd,
      rpm_limit: group.rpmLimit,
      created_at_ms: nowMs,
    });
  }

  /** Inserts the user; false when one with this id exists already (also when another request inserted it first). */
  async insertUser(user: UserRecord, nowMs: number): Promise<boolean> {
    const inserted = await this.knex('gateway_users')
      .insert({ id: user.id, name: user.name, group_id: user.groupId, rpm_limit: user.rpmLimit, max_concurrency: user.maxConcurrency, created_at_ms: nowMs })
      .onConflict('id')
      .ignore()
      .returning('id');
    return inserted.length > 0;
  }

  async insertKey(key: KeyRecord, keyHash: string, nowMs: number): Promise<void> {
    await this.knex('gateway_api_keys').insert({
      id: key.id,
      user_id: key.userId,
      key_hash: keyHash,
      label: key.label,
      name: key.name,
      enabled: key.enabled,
      rate_limit_5h_usd: key.rateLimit5hUsd,
      rate_limit_1d_usd: key.rateLimit1dUsd,
      rate_limit_7d_usd: key.rateLimit7dUsd,
      created_at_ms: nowMs,
    });
  }

  /** Applies the given changes (undefined = keep); returns the updated key or null when it does not exist. */
  async updateKey(id: string, changes: Partial<KeyLimits> & { enabled?: boolean }): Promise<KeyRecord | null> {
    const columns: Row = {};
    if (changes.enabled !== undefined) columns.enabled = changes.enabled;
    if (changes.rateLimit5hUsd !== undefined) columns.rate_limit_5h_usd = changes.rateLimit5hUsd;
    if (changes.rateLimit1dUsd !== undefined) columns.rate_limit_1d_usd = changes.rateLimit1dUsd;
    if (changes.rateLimit7dUsd !== undefined) columns.rate_limit_7d_usd = changes.rateLimit7dUsd;
    if (Object.keys(columns).length > 0) await this.knex('gateway_api_keys').where({ id }).update(columns);
    return this.getKey(id);
  }

  async updateUser(id: string, changes: { groupId?: string | null; rpmLimit?: number; maxConcurrency?: number }): Promise<UserRecord | null> {
    const columns: Row = {};
    if (changes.groupId !== undefined) columns.group_id = changes.groupId;
    if (changes.rpmLimit !== undefined) columns.rpm_limit = changes.rpmLimit;
    if (changes.maxConcurrency !== undefined) columns.max_concurrency = changes.maxConcurrency;
    if (Object.keys(columns).length > 0) await this.knex('gateway_users').where({ id }).update(columns);
    return this.getUser(id);
  }
}

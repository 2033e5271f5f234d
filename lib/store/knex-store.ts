// KnexBillingStore: the source of truth on PostgreSQL or SQLite — exact money, versioned rows, atomic window-aware writes.
import type { Knex } from 'knex';
import { systemClock } from '../clock.js';
import { silentLogger } from '../log.js';
import { formatUsd, MAX_USD_UNITS } from '../money.js';
import { parseOptions, v } from '../options.js';
import type {
  ApiKeyWindowsEntity,
  BalanceEntity,
  BillingLogger,
  BillingStore,
  Clock,
  PlatformQuotaEntity,
  PlatformQuotaLimits,
  EntityWrite,
  RpmOverride,
  SettleOutcome,
  SettlementInput,
  SettlementResult,
  StoreHoldRequest,
  StoreHoldResult,
  SubscriptionEntity,
  SubscriptionInput,
  TimeContext,
  UsageLogRow,
} from '../types.js';
import { BillingValidationError } from '../validate.js';
import { dialectOf, type Db, type Dialect } from './dialect.js';
import { toApiKeyWindows, toBalance, toPlatformQuota, toRpmOverride, toSubscription, toUsageLogRow, type Row } from './rows.js';
import { RepeatOfFailedSettlement, settleBatchIn } from './settle-batch.js';
import { settleIn } from './settle-transaction.js';
import { StoreDataError, violatesData } from './store-errors.js';
import {
  apiKeyIdOf,
  epochMsOf,
  groupIdOf,
  holdIdOf,
  listLimitOf,
  platformOf,
  quotaLimitsOf,
  rpmOverrideOf,
  settlementOf,
  storeHoldOf,
  subscriptionOf,
  timeOf,
  unitsOf,
  userIdOf,
  type CheckedSettlement,
} from './store-input.js';
import { denialOf, expiredHolds, holdIn, releaseIn, renewIn } from './store-holds.js';
import { TABLES } from './tables.js';
import { inTransaction, type RetryPolicy } from './transaction.js';
import { KEY_WINDOWS, resetExpiredWindows } from './window-sql.js';

export interface KnexBillingStoreOptions {
  /** Stamps `updated_at_ms` and the default `startsAtMs` of a new subscription. Default: system time. Window arithmetic never uses it: it takes the TimeContext of each call. */
  clock?: Clock;
  /** Warns when a transaction is retried after a deadlock or serialization failure. Default: silent. */
  logger?: BillingLogger;
  /** Attempts per transaction when the database aborts it as a deadlock victim or for serialization (40P01, 40001). Default 8. */
  transactionAttempts?: number;
  /** First retry delay, ms, doubled per attempt, with full jitter. Default 5. */
  retryBaseDelayMs?: number;
}

type ResolvedOptions = Required<KnexBillingStoreOptions>;

const DEFAULTS: ResolvedOptions = Object.freeze({ clock: systemClock, logger: silentLogger, transactionAttempts: 8, retryBaseDelayMs: 5 });

export class KnexBillingStore implements BillingStore {
  readonly #knex: Knex;
  readonly #d: Dialect;
  readonly #clock: Clock;
  readonly #retry: RetryPolicy;
  readonly #logger: BillingLogger;

  constructor(knex: Knex, options?: KnexBillingStoreOptions) {
    if (typeof knex !== 'function' || typeof (knex as { transaction?: unknown }).transaction !== 'function') {
      throw new TypeError('KnexBillingStore needs a knex instance');
    }
    const o = parseOptions<ResolvedOptions>('KnexBillingStore', options, DEFAULTS, {
      clock: v.object<Clock>('now'),
      logger: v.object<BillingLogger>('debug', 'info', 'warn', 'error'),
      transactionAttempts: v.positiveInt(100),
      retryBaseDelayMs: v.nonNegativeInt(10_000),
    });
    this.#knex = knex;
    this.#d = dialectOf(knex);
    this.#clock = o.clock;
    this.#retry = { attempts: o.transactionAttempts, baseDelayMs: o.retryBaseDelayMs, logger: o.logger };
    this.#logger = o.logger;
  }

  /** Metadata time (updated_at, default subscription start): whole ms from the configured clock. */
  #nowMs(): number {
    return epochMsOf(Math.floor(this.#clock.now()), 'clock.now()');
  }

  #rows(db: Db, sql: string, bindings: readonly unknown[]): Promise<Row[]> {
    return this.#d.rows(db, sql, bindings);
  }

  /** Writes go through here: one transaction, retried whole on a deadlock or serialization failure. */
  #write<T>(operation: string, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return inTransaction(this.#knex, operation, this.#retry, work);
  }

  // -------------------------------------------------------------------------------------------
  // Reads for the checks.

  async getBalance(userId: string): Promise<BalanceEntity | null> {
    const user = userIdOf(userId);
    const [row] = await this.#rows(this.#knex, `SELECT balance, held, version FROM ${TABLES.accounts} WHERE user_id = ?`, [user]);
    return row === undefined ? null : toBalance(this.#d, row);
  }

  async getActiveSubscription(userId: string, groupId: string, time: TimeContext): Promise<SubscriptionEntity | null> {
    const user = userIdOf(userId);
    const group = groupIdOf(groupId);
    const { nowMs } = timeOf(time);
    // Valid until its expiry instant: at expiresAt itself the plan is over (docs/money-and-limits.md).
    const [row] = await this.#rows(
      this.#knex,
      `SELECT * FROM ${TABLES.subscriptions} WHERE user_id = ? AND group_id = ? AND status = 'active' AND expires_at_ms > ${this.#d.bigintParam}`,
      [user, group, nowMs],
    );
    return row === undefined ? null : toSubscription(this.#d, row);
  }

  async getApiKeyWindows(userId: string, apiKeyId: string): Promise<ApiKeyWindowsEntity> {
    const [row] = await this.#rows(this.#knex, `SELECT * FROM ${TABLES.apiKeyWindows} WHERE user_id = ? AND api_key_id = ?`, [
      userIdOf(userId),
      apiKeyIdOf(apiKeyId),
    ]);
    return toApiKeyWindows(this.#d, row);
  }

  async getPlatformQuota(userId: string, platform: string): Promise<PlatformQuotaEntity | null> {
    const [row] = await this.#rows(this.#knex, `SELECT * FROM ${TABLES.platformQuotas} WHERE user_id = ? AND platform = ?`, [
      userIdOf(userId),
      platformOf(platform),
    ]);
    return row === undefined ? null : toPlatformQuota(this.#d, row);
  }

  async getRpmOverride(userId: string, groupId: string): Promise<RpmOverride> {
    const [row] = await this.#rows(this.#knex, `SELECT rpm_limit FROM ${TABLES.rpmOverrides} WHERE user_id = ? AND group_id = ?`, [
      userIdOf(userId),
      groupIdOf(groupId),
    ]);
    return toRpmOverride(row);
  }

  async listUsage(userId: string, limit: number): Promise<UsageLogRow[]> {
    const user = userIdOf(userId);
    const count = listLimitOf(limit);
    const rows = await this.#rows(
      this.#knex,
      `SELECT request_id, api_key_id, user_id, group_id, mode, cost, platform, model, input_tokens, output_tokens, created_at_ms
       FROM ${TABLES.usageLog} WHERE user_id = ? ORDER BY created_at_ms DESC, id DESC LIMIT ?`,
      [user, count],
    );
    return rows.map((row) => toUsageLogRow(this.#d, row));
  }

  async ping(): Promise<void> {
    await this.#knex.raw('SELECT 1');
  }

  // -------------------------------------------------------------------------------------------
  // Window maintenance and settlement.

  async resetExpiredApiKeyWindows(userId: string, apiKeyId: string, time: TimeContext): Promise<ApiKeyWindowsEntity> {
    const user = userIdOf(userId);
    const key = apiKeyIdOf(apiKeyId);
    const { set, where } = resetExpiredWindows(this.#d, KEY_WINDOWS, timeOf(time));
    // One statement: the expiry test and the reset happen on the same row version, and a row with
    // nothing to reset is not written at all (its version stays, so caches stay valid).
    const [updated] = await this.#write('resetExpiredApiKeyWindows', (trx) =>
      this.#rows(
        trx,
        `UPDATE ${TABLES.apiKeyWindows} SET ${set.sql}, version = version + 1 WHERE user_id = ? AND api_key_id = ? AND (${where.sql}) RETURNING *`,
        [...set.bindings, user, key, ...where.bindings],
      ),
    );
    if (updated !== undefined) return toApiKeyWindows(this.#d, updated);
    return this.getApiKeyWindows(user, key);
  }

  // -------------------------------------------------------------------------------------------
  // Store holds (docs/holds.md): reservations while the cache is unreachable.

  async holdInStore(request: StoreHoldRequest): Promise<StoreHoldResult> {
    const checked = storeHoldOf(request);
    return denialOf(() => this.#write('holdInStore', (trx) => holdIn(trx, this.#d, checked)));
  }

  async releaseStoreHold(userId: string, holdId: string): Promise<EntityWrite[] | null> {
    const user = userIdOf(userId);
    const id = holdIdOf(holdId);
    return this.#write('releaseStoreHold', (trx) => releaseIn(trx, this.#d, user, id));
  }

  async releaseExpiredStoreHolds(nowMs: number, limit: number): Promise<EntityWrite[]> {
    const now = epochMsOf(nowMs, 'nowMs');
    const writes: EntityWrite[] = [];
    let after: { expiresAtMs: number; id: string } | undefined;
    for (;;) {
      const page = await expiredHolds(this.#knex, this.#d, now, listLimitOf(limit), after);
      // One transaction per hold: a sweep never holds many rows' locks at once.
      for (const { userId, holdId, expiresAtMs } of page) {
        after = { expiresAtMs, id: holdId };
        try {
          writes.push(...((await this.#write('releaseExpiredStoreHolds', (trx) => releaseIn(trx, this.#d, userId, holdId))) ?? []));
        } catch (err) {
          // An unreadable hold is skipped, so it cannot stop the sweep of the others.
          if (!(err instanceof StoreDataError)) throw err;
          this.#logger.error({ holdId, err: err.message }, 'store hold cannot be read; left in place (it keeps counting)');
        }
      }
      if (page.length < limit) return writes;
    }
  }

  async renewStoreHolds(holdIds: readonly string[], expiresAtMs: number): Promise<string[]> {
    const ids = holdIds.map((id) => holdIdOf(id));
    const until = epochMsOf(expiresAtMs, 'expiresAtMs');
    return this.#write('renewStoreHolds', (trx) => renewIn(trx, this.#d, ids, until));
  }

  async settle(input: SettlementInput): Promise<SettlementResult> {
    const checked = settlementOf(input);
    return this.#write('settle', (trx) => settleIn(trx, this.#d, checked));
  }

  async settleBatch(inputs: readonly SettlementInput[]): Promise<SettleOutcome[]> {
    const outcomes: SettleOutcome[] = new Array(inputs.length);
    const valid: { index: number; checked: CheckedSettlement }[] = [];
    inputs.forEach((input, index) => {
      try {
        valid.push({ index, checked: settlementOf(input) });
      } catch (error) {
        outcomes[index] = { ok: false, error: error as Error };
      }
    });
    const alone = (index: number): Promise<SettleOutcome> =>
      this.settle(inputs[index]!).then(
        (result) => ({ ok: true, result }),
        (error: Error) => ({ ok: false, error }),
      );
    await this.#settleInOrder(valid, outcomes, alone);
    return outcomes;
  }

  /**
   * Commits `part` as one transaction, in arrival order. A repeat of a settlement that failed alone
   * in it (its account was missing) must run after that failure and before the settlements behind
   * it, as one by one it would: the transaction is rolled back and the part split there, the repeat
   * then first of the second half. Rare (a retried request of an unknown account in the same batch).
   */
  async #settleInOrder(
    part: readonly { index: number; checked: CheckedSettlement }[],
    outcomes: SettleOutcome[],
    alone: (index: number) => Promise<SettleOutcome>,
  ): Promise<void> {
    if (part.length <= 1) {
      for (const { index } of part) outcomes[index] = await alone(index);
      return;
    }
    let batch: SettleOutcome[];
    try {
      batch = await this.#write('settleBatch', async (trx) => {
        const result = await settleBatchIn(
          trx,
          this.#d,
          part.map((p) => p.checked),
        );
        const repeat = result.findIndex((o) => !o.ok && o.error instanceof RepeatOfFailedSettlement);
        if (repeat > 0) throw new SplitBatch(repeat);
        return result;
      });
    } catch (error) {
      if (error instanceof SplitBatch) {
        await this.#settleInOrder(part.slice(0, error.at), outcomes, alone);
        await this.#settleInOrder(part.slice(error.at), outcomes, alone);
        return;
      }
      if (!violatesData(error)) {
        // The store failed the whole transaction: every settlement gets that error, and retries.
        for (const { index } of part) outcomes[index] = { ok: false, error: error as Error };
        return;
      }
      // One of them broke a constraint the checks cannot see: each runs alone, so only it fails.
      for (const { index } of part) outcomes[index] = await alone(index);
      return;
    }
    for (const [position, { index }] of part.entries()) outcomes[index] = batch[position]!;
  }

  // -------------------------------------------------------------------------------------------
  // Administration writes (docs/architecture.md): each bumps the row version and returns the new row.

  async topUp(userId: string, amount: bigint): Promise<BalanceEntity> {
    const user = userIdOf(userId);
    const units = unitsOf(amount, 'amount', 1n);
    const d = this.#d;
    // The WHERE keeps the balance inside the exact range every cache can hold (docs/money-and-limits.md).
    const [row] = await this.#write('topUp', (trx) =>
      this.#rows(
        trx,
        `INSERT INTO ${TABLES.accounts} (user_id, balance, version, updated_at_ms) VALUES (?, ${d.moneyParam}, 1, ${d.bigintParam})
         ON CONFLICT (user_id) DO UPDATE SET balance = ${TABLES.accounts}.balance + excluded.balance,
           version = ${TABLES.accounts}.version + 1, updated_at_ms = excluded.updated_at_ms
         WHERE ${TABLES.accounts}.balance + excluded.balance <= ${d.moneyParam}
         RETURNING balance, held, version`,
        [user, d.money(units), this.#nowMs(), d.money(MAX_USD_UNITS)],
      ),
    );
    if (row === undefined) {
      throw new BillingValidationError(
        'amount',
        `topUp of ${formatUsd(units)} USD would take the balance of user ${JSON.stringify(user)} above ${formatUsd(MAX_USD_UNITS)} USD`,
      );
    }
    return toBalance(d, row);
  }

  async setBalance(userId: string, amount: bigint): Promise<BalanceEntity> {
    const user = userIdOf(userId);
    const units = unitsOf(amount, 'amount', -MAX_USD_UNITS);
    const d = this.#d;
    const [row] = await this.#write('setBalance', (trx) =>
      this.#rows(
        trx,
        `INSERT INTO ${TABLES.accounts} (user_id, balance, version, updated_at_ms) VALUES (?, ${d.moneyParam}, 1, ${d.bigintParam})
         ON CONFLICT (user_id) DO UPDATE SET balance = excluded.balance, version = ${TABLES.accounts}.version + 1, updated_at_ms = excluded.updated_at_ms
         RETURNING balance, held, version`,
        [user, d.money(units), this.#nowMs()],
      ),
    );
    return toBalance(d, row as Row);
  }

  async upsertSubscription(input: SubscriptionInput): Promise<SubscriptionEntity> {
    const s = subscriptionOf(input);
    const d = this.#d;
    const startsAtMs = s.startsAtMs ?? this.#nowMs();
    const t = TABLES.subscriptions;
    // An update changes the plan's status and dates and keeps its usage and windows; a start
    // that is not given keeps the stored one (renewals usually move only the expiry).
    const [row] = await this.#write('upsertSubscription', (trx) =>
      this.#rows(
        trx,
        `INSERT INTO ${t} (user_id, group_id, status, starts_at_ms, expires_at_ms, version) VALUES (?, ?, ?, ${d.bigintParam}, ${d.bigintParam}, 1)
         ON CONFLICT (user_id, group_id) DO UPDATE SET status = excluded.status,
           starts_at_ms = COALESCE(${d.bigintParam}, ${t}.starts_at_ms), expires_at_ms = excluded.expires_at_ms, version = ${t}.version + 1
         RETURNING *`,
        [s.userId, s.groupId, s.status, startsAtMs, s.expiresAtMs, s.startsAtMs],
      ),
    );
    return toSubscription(d, row as Row);
  }

  async setPlatformQuota(userId: string, platform: string, limits: PlatformQuotaLimits): Promise<PlatformQuotaEntity> {
    const user = userIdOf(userId);
    const name = platformOf(platform);
    const { daily, weekly, monthly } = quotaLimitsOf(limits);
    const d = this.#d;
    const t = TABLES.platformQuotas;
    // Limits left undefined keep their stored value (NULL on a new row); usages and windows are kept.
    const given = [
      ['daily_limit', daily],
      ['weekly_limit', weekly],
      ['monthly_limit', monthly],
    ] as const;
    const sets = given.filter(([, value]) => value !== undefined).map(([column]) => `${column} = excluded.${column}`);
    sets.push(`version = ${t}.version + 1`);
    const [row] = await this.#write('setPlatformQuota', (trx) =>
      this.#rows(
        trx,
        `INSERT INTO ${t} (user_id, platform, daily_limit, weekly_limit, monthly_limit, version)
         VALUES (?, ?, ${d.moneyParam}, ${d.moneyParam}, ${d.moneyParam}, 1)
         ON CONFLICT (user_id, platform) DO UPDATE SET ${sets.join(', ')}
         RETURNING *`,
        [user, name, ...given.map(([, value]) => (value === undefined || value === null ? null : d.money(value)))],
      ),
    );
    return toPlatformQuota(d, row as Row);
  }

  async setRpmOverride(userId: string, groupId: string, value: RpmOverride): Promise<RpmOverride> {
    const user = userIdOf(userId);
    const group = groupIdOf(groupId);
    const override = rpmOverrideOf(value);
    const t = TABLES.rpmOverrides;
    if (override === null) {
      await this.#write('setRpmOverride', (trx) => trx(t).where({ user_id: user, group_id: group }).delete());
      return null;
    }
    const [row] = await this.#write('setRpmOverride', (trx) =>
      this.#rows(
        trx,
        `INSERT INTO ${t} (user_id, group_id, rpm_limit, version) VALUES (?, ?, ?, 1)
         ON CONFLICT (user_id, group_id) DO UPDATE SET rpm_limit = excluded.rpm_limit, version = ${t}.version + 1
         RETURNING rpm_limit`,
        [user, group, override],
      ),
    );
    return toRpmOverride(row);
  }

  async resetApiKeyWindows(userId: string, apiKeyId: string): Promise<ApiKeyWindowsEntity> {
    const user = userIdOf(userId);
    const key = apiKeyIdOf(apiKeyId);
    // A key without a row has nothing to reset; it keeps reading as version 0.
    const [row] = await this.#write('resetApiKeyWindows', (trx) =>
      this.#rows(
        trx,
        `UPDATE ${TABLES.apiKeyWindows} SET usage_5h = 0, start_5h_ms = NULL, usage_1d = 0, start_1d_ms = NULL, usage_7d = 0, start_7d_ms = NULL,
           version = version + 1 WHERE user_id = ? AND api_key_id = ? RETURNING *`,
        [user, key],
      ),
    );
    return toApiKeyWindows(this.#d, row);
  }
}

/** Rolls a batch back to commit it in two parts, split before position `at` (see #settleInOrder). */
class SplitBatch extends Error {
  constructor(readonly at: number) {
    super(`settlement batch split at ${at}`);
  }
}

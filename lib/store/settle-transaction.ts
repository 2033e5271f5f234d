// The body of one settlement transaction (docs/behaviour.md#settlement): dedup row first, then the charge, key windows and platform quota.
import type { Knex } from 'knex';
import type { SettlementResult } from '../types.js';
import type { Dialect } from './dialect.js';
import { settlementFingerprint } from './fingerprint.js';
import { toApiKeyWindows, toBalance, toPlatformQuota, toSubscription } from './rows.js';
import { SettlementConflictError, SettlementTargetMissingError } from './store-errors.js';
import type { CheckedSettlement } from './store-input.js';
import { TABLES } from './tables.js';
import { addToWindows, firstWindowValues, KEY_WINDOWS, QUOTA_WINDOWS, SUBSCRIPTION_WINDOWS } from './window-sql.js';

/**
 * Runs inside a transaction. Rows are written in one fixed order — usage log, account or
 * subscription, key windows, platform quota — so two settlements of the same user wait for each
 * other instead of deadlocking. An error rolls everything back, the log row included.
 */
export async function settleIn(trx: Knex.Transaction, d: Dialect, s: CheckedSettlement): Promise<SettlementResult> {
  const base = { requestId: s.requestId, costUnits: s.costUnits };
  const fingerprint = settlementFingerprint(s);

  // ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to commit or roll back,
  // so exactly one of two racing repeats writes, and the other then sees its row.
  const inserted = await d.rows(
    trx,
    `INSERT INTO ${TABLES.usageLog} (request_id, api_key_id, user_id, group_id, mode, cost, platform, model, input_tokens, output_tokens, fingerprint, created_at_ms)
     VALUES (?, ?, ?, ?, ?, ${d.moneyParam}, ?, ?, ${d.bigintParam}, ${d.bigintParam}, ?, ${d.bigintParam})
     ON CONFLICT (request_id, api_key_id) DO NOTHING RETURNING id`,
    [s.requestId, s.apiKeyId, s.userId, s.groupId, s.mode, d.money(s.costUnits), s.platform, s.model, s.inputTokens, s.outputTokens, fingerprint, s.time.nowMs],
  );
  if (inserted.length === 0) {
    const [first] = await d.rows(trx, `SELECT fingerprint FROM ${TABLES.usageLog} WHERE request_id = ? AND api_key_id = ?`, [s.requestId, s.apiKeyId]);
    if (first?.fingerprint !== fingerprint) throw new SettlementConflictError(s.requestId, s.apiKeyId);
    return { duplicate: true, ...base };
  }

  const result: SettlementResult = { duplicate: false, ...base };
  // Zero cost, or runMode 'simple': the usage is recorded and nothing is charged.
  if (!s.charge || s.costUnits === 0n) return result;

  if (s.mode === 'balance') {
    // No floor: the request that crosses zero overdraws, and balanceCheck turns the next ones away.
    const [row] = await d.rows(
      trx,
      `UPDATE ${TABLES.accounts} SET balance = balance - ${d.moneyParam}, version = version + 1, updated_at_ms = ${d.bigintParam}
       WHERE user_id = ? RETURNING *`,
      [d.money(s.costUnits), s.time.nowMs, s.userId],
    );
    if (row === undefined) throw new SettlementTargetMissingError('account', s.userId, null);
    result.balance = toBalance(d, row);
  } else {
    // The request was admitted, so it is charged whatever the subscription's status is by now.
    const add = addToWindows(d, TABLES.subscriptions, SUBSCRIPTION_WINDOWS, s.costUnits, s.time);
    const [row] = await d.rows(trx, `UPDATE ${TABLES.subscriptions} SET ${add.sql}, version = version + 1 WHERE user_id = ? AND group_id = ? RETURNING *`, [
      ...add.bindings,
      s.userId,
      s.groupId,
    ]);
    if (row === undefined) throw new SettlementTargetMissingError('subscription', s.userId, s.groupId);
    result.subscription = toSubscription(d, row);
  }

  if (s.trackKeyWindows && s.apiKeyId !== '') {
    const first = firstWindowValues(d, KEY_WINDOWS, s.costUnits, s.time);
    const add = addToWindows(d, TABLES.apiKeyWindows, KEY_WINDOWS, s.costUnits, s.time);
    const [row] = await d.rows(
      trx,
      `INSERT INTO ${TABLES.apiKeyWindows} (user_id, api_key_id, usage_5h, start_5h_ms, usage_1d, start_1d_ms, usage_7d, start_7d_ms, version)
       VALUES (?, ?, ${first.sql}, 1)
       ON CONFLICT (user_id, api_key_id) DO UPDATE SET ${add.sql}, version = ${TABLES.apiKeyWindows}.version + 1
       RETURNING *`,
      [s.userId, s.apiKeyId, ...first.bindings, ...add.bindings],
    );
    result.apiKeyWindows = toApiKeyWindows(d, row);
  }

  if (s.mode === 'balance' && s.platform !== null) {
    // Only an existing quota row is charged: users without a quota get no row.
    const add = addToWindows(d, TABLES.platformQuotas, QUOTA_WINDOWS, s.costUnits, s.time);
    const [row] = await d.rows(trx, `UPDATE ${TABLES.platformQuotas} SET ${add.sql}, version = version + 1 WHERE user_id = ? AND platform = ? RETURNING *`, [
      ...add.bindings,
      s.userId,
      s.platform,
    ]);
    if (row !== undefined) result.platformQuota = toPlatformQuota(d, row);
  }
  return result;
}

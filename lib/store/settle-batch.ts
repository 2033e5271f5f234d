// Many settlements in one transaction (group commit, docs/group-commit.md), with exactly the outcome
// of running them one by one in arrival order: the same usage rows, the same row values and versions,
// and per settlement the same receipt or the same error.
import type { Knex } from 'knex';
import type { ApiKeyWindowsEntity, BalanceEntity, PlatformQuotaEntity, SettleOutcome, SettlementResult, SubscriptionEntity, TimeContext } from '../types.js';
import { WINDOW_FIELDS } from '../cache/leases.js';
import { expiryThreshold, isOneTimeDailyCard, newWindowStart } from '../windows.js';
import type { Dialect } from './dialect.js';
import { settlementFingerprint } from './fingerprint.js';
import { toApiKeyWindows, toBalance, toPlatformQuota, toSubscription, type Row } from './rows.js';
import { SettlementConflictError, SettlementTargetMissingError } from './store-errors.js';
import type { CheckedSettlement } from './store-input.js';
import { TABLES } from './tables.js';
import { KEY_WINDOWS, QUOTA_WINDOWS, ruleOnRow, SUBSCRIPTION_WINDOWS, type WindowColumns } from './window-sql.js';

type BatchOutcome = SettleOutcome;

/**
 * The charge of one settlement on an entity's windows, as addToWindows does it in SQL. `isCard`: the
 * row is a one-time daily card's subscription (only subscriptions have a term).
 */
function addToEntityWindows(entity: Record<string, unknown>, windows: readonly WindowColumns[], cost: bigint, time: TimeContext, isCard = false): void {
  for (const win of windows) {
    const { usageProp, startProp } = WINDOW_FIELDS[win.window];
    const rule = ruleOnRow(win, isCard);
    const start = entity[startProp] as number | null;
    if (start === null || start < expiryThreshold(rule, time)) {
      entity[usageProp] = cost;
      entity[startProp] = newWindowStart(rule, time, start);
    } else {
      entity[usageProp] = (entity[usageProp] as bigint) + cost;
    }
  }
}

/** One table's rows touched by a batch, read under lock, charged in memory, written back once each. */
interface Target<E> {
  entity: E;
  /** Settlements applied: the version goes up by this many, as one write per settlement would. */
  applied: number;
  /** The last settlement that charged it: its receipt carries the row for the cache. */
  lastItem: number;
  lastTime: TimeContext;
}

interface TableSpec {
  table: string;
  keys: readonly string[];
}

const ACCOUNTS: TableSpec = { table: TABLES.accounts, keys: ['user_id'] };
const SUBSCRIPTIONS: TableSpec = { table: TABLES.subscriptions, keys: ['user_id', 'group_id'] };
const KEY_WINDOW_ROWS: TableSpec = { table: TABLES.apiKeyWindows, keys: ['user_id', 'api_key_id'] };
const QUOTAS: TableSpec = { table: TABLES.platformQuotas, keys: ['user_id', 'platform'] };

const keyOf = (parts: readonly string[]): string => parts.join('\u0000');

function compareKeys(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

/** `(a, b) IN (VALUES (?, ?), …)`, or `a IN (?, …)` for one column. */
function keyList(spec: TableSpec, keys: readonly (readonly string[])[]): { sql: string; bindings: string[] } {
  const bindings = keys.flat();
  if (spec.keys.length === 1) return { sql: `${spec.keys[0]} IN (${keys.map(() => '?').join(', ')})`, bindings };
  const tuple = `(${spec.keys.map(() => '?').join(', ')})`;
  return { sql: `(${spec.keys.join(', ')}) IN (VALUES ${keys.map(() => tuple).join(', ')})`, bindings };
}

/** Reads the rows with these keys, locking them in key order (PostgreSQL; SQLite's writer lock covers it). */
async function lockRows(trx: Knex.Transaction, d: Dialect, spec: TableSpec, keys: readonly (readonly string[])[]): Promise<Map<string, Row>> {
  const rows = new Map<string, Row>();
  if (keys.length === 0) return rows;
  const sorted = [...keys].sort(compareKeys);
  const list = keyList(spec, sorted);
  const lock = d.name === 'postgresql' ? ' FOR UPDATE' : '';
  for (const row of await d.rows(trx, `SELECT * FROM ${spec.table} WHERE ${list.sql} ORDER BY ${spec.keys.join(', ')}${lock}`, list.bindings)) {
    rows.set(keyOf(spec.keys.map((k) => String(row[k]))), row);
  }
  return rows;
}

type ColumnType = 'text' | 'money' | 'bigint';

/** One multi-row UPDATE from a VALUES list: absolute new values per row, version + settlements applied. */
async function writeRows(
  trx: Knex.Transaction,
  d: Dialect,
  spec: TableSpec,
  columns: readonly [string, ColumnType][],
  rows: readonly { key: readonly string[]; values: readonly unknown[]; applied: number }[],
): Promise<void> {
  if (rows.length === 0) return;
  const cast = (type: ColumnType): string =>
    type === 'money' ? d.moneyParam : type === 'bigint' ? d.bigintParam : d.name === 'postgresql' ? 'CAST(? AS TEXT)' : '?';
  const names = [...spec.keys, ...columns.map(([name]) => name), 'applied'];
  const tuple = `(${[...spec.keys.map(() => cast('text')), ...columns.map(([, type]) => cast(type)), cast('bigint')].join(', ')})`;
  const sorted = [...rows].sort((a, b) => compareKeys(a.key, b.key));
  const bindings = sorted.flatMap((row) => [...row.key, ...row.values, row.applied]);
  const set = [...columns.map(([name]) => `${name} = v.${name}`), `version = ${spec.table}.version + v.applied`].join(', ');
  const join = spec.keys.map((k) => `${spec.table}.${k} = v.${k}`).join(' AND ');
  await d.rows(
    trx,
    `WITH v(${names.join(', ')}) AS (VALUES ${sorted.map(() => tuple).join(', ')}) UPDATE ${spec.table} SET ${set} FROM v WHERE ${join}`,
    bindings,
  );
}

const windowColumns = (windows: readonly WindowColumns[]): [string, ColumnType][] =>
  windows.flatMap((win): [string, ColumnType][] => [
    [win.usage, 'money'],
    [win.start, 'bigint'],
  ]);

function windowValues(d: Dialect, entity: Record<string, unknown>, windows: readonly WindowColumns[]): unknown[] {
  return windows.flatMap((win) => [d.money(entity[WINDOW_FIELDS[win.window].usageProp] as bigint), entity[WINDOW_FIELDS[win.window].startProp]]);
}

/**
 * Runs inside one transaction. Order of work, the same in every batch so that batches never
 * deadlock one another: usage-log rows in key order, then accounts and subscriptions, key windows
 * and platform quotas, each table's rows locked in key order.
 */
export async function settleBatchIn(trx: Knex.Transaction, d: Dialect, items: readonly CheckedSettlement[]): Promise<BatchOutcome[]> {
  const outcomes: (BatchOutcome | undefined)[] = new Array(items.length);
  const fingerprints = items.map(settlementFingerprint);
  const base = (i: number) => ({ requestId: items[i]!.requestId, costUnits: items[i]!.costUnits });
  /** The usage log's unique key of item i. */
  const logKey = (i: number) => keyOf([items[i]!.requestId, items[i]!.apiKeyId]);

  // A repeat of an earlier settlement in this batch is decided by that one's fate.
  const primaryOf = new Map<string, number>();
  const repeats: number[] = [];
  for (let i = 0; i < items.length; i++) {
    const key = logKey(i);
    if (primaryOf.has(key)) repeats.push(i);
    else primaryOf.set(key, i);
  }
  const primaries = [...primaryOf.values()];

  // 1. Usage rows, in key order; those already there are duplicates or conflicts.
  const byLogKey = [...primaries].sort((a, b) => compareKeys([items[a]!.requestId, items[a]!.apiKeyId], [items[b]!.requestId, items[b]!.apiKeyId]));
  const tuple = `(?, ?, ?, ?, ?, ${d.moneyParam}, ?, ?, ${d.bigintParam}, ${d.bigintParam}, ?, ${d.bigintParam})`;
  const inserted = await d.rows(
    trx,
    `INSERT INTO ${TABLES.usageLog} (request_id, api_key_id, user_id, group_id, mode, cost, platform, model, input_tokens, output_tokens, fingerprint, created_at_ms)
     VALUES ${byLogKey.map(() => tuple).join(', ')}
     ON CONFLICT (request_id, api_key_id) DO NOTHING RETURNING id, request_id, api_key_id`,
    byLogKey.flatMap((i) => {
      const s = items[i]!;
      return [
        s.requestId,
        s.apiKeyId,
        s.userId,
        s.groupId,
        s.mode,
        d.money(s.costUnits),
        s.platform,
        s.model,
        s.inputTokens,
        s.outputTokens,
        fingerprints[i],
        s.time.nowMs,
      ];
    }),
  );
  const logIdOf = new Map(inserted.map((row) => [keyOf([String(row.request_id), String(row.api_key_id)]), row.id]));
  const existing = primaries.filter((i) => !logIdOf.has(logKey(i)));
  const storedFingerprint = new Map<string, string>();
  if (existing.length > 0) {
    const tuples = existing.map(() => '(?, ?)').join(', ');
    const rows = await d.rows(
      trx,
      `SELECT request_id, api_key_id, fingerprint FROM ${TABLES.usageLog} WHERE (request_id, api_key_id) IN (VALUES ${tuples})`,
      existing.flatMap((i) => [items[i]!.requestId, items[i]!.apiKeyId]),
    );
    for (const row of rows) storedFingerprint.set(keyOf([String(row.request_id), String(row.api_key_id)]), String(row.fingerprint));
  }
  for (const i of existing) {
    const s = items[i]!;
    const stored = storedFingerprint.get(logKey(i));
    outcomes[i] =
      stored === fingerprints[i]
        ? { ok: true, result: { duplicate: true, ...base(i) } }
        : { ok: false, error: new SettlementConflictError(s.requestId, s.apiKeyId) };
  }

  // 2. What the new ones charge, read under lock: accounts and subscriptions first.
  const charging = primaries.filter((i) => logIdOf.has(logKey(i)) && items[i]!.charge && items[i]!.costUnits > 0n);
  // New but charging nothing (zero cost, runMode 'simple'): the usage row is all.
  const chargingSet = new Set(charging);
  for (const i of primaries) if (outcomes[i] === undefined && !chargingSet.has(i)) outcomes[i] = { ok: true, result: { duplicate: false, ...base(i) } };
  const accountKey = (s: CheckedSettlement) => [s.userId];
  const subscriptionKey = (s: CheckedSettlement) => [s.userId, s.groupId as string];
  const accountRows = await lockRows(
    trx,
    d,
    ACCOUNTS,
    charging.filter((i) => items[i]!.mode === 'balance').map((i) => accountKey(items[i]!)),
  );
  const subscriptionRows = await lockRows(
    trx,
    d,
    SUBSCRIPTIONS,
    charging.filter((i) => items[i]!.mode === 'subscription').map((i) => subscriptionKey(items[i]!)),
  );
  const missing = new Set<number>();
  const charged = charging.filter((i) => {
    const s = items[i]!;
    const found = s.mode === 'balance' ? accountRows.has(keyOf(accountKey(s))) : subscriptionRows.has(keyOf(subscriptionKey(s)));
    if (!found) missing.add(i);
    return found;
  });
  // A settlement without its account or subscription fails alone, its usage row taken back.
  for (const i of missing) {
    const s = items[i]!;
    outcomes[i] = { ok: false, error: new SettlementTargetMissingError(s.mode === 'balance' ? 'account' : 'subscription', s.userId, s.groupId) };
  }
  if (missing.size > 0) {
    const ids = [...missing].map((i) => logIdOf.get(logKey(i)));
    await d.rows(trx, `DELETE FROM ${TABLES.usageLog} WHERE id IN (${ids.map(() => '?').join(', ')})`, ids);
  }

  // Key windows: a key never charged gets its row now (version 0, nothing used), then all are locked.
  const keyWindowKey = (s: CheckedSettlement) => [s.userId, s.apiKeyId];
  const quotaKey = (s: CheckedSettlement) => [s.userId, s.platform as string];
  const keyCharged = charged.filter((i) => items[i]!.trackKeyWindows && items[i]!.apiKeyId !== '');
  const keyKeys = [...new Map(keyCharged.map((i) => [keyOf(keyWindowKey(items[i]!)), keyWindowKey(items[i]!)])).values()].sort(compareKeys);
  if (keyKeys.length > 0) {
    await d.rows(
      trx,
      `INSERT INTO ${TABLES.apiKeyWindows} (user_id, api_key_id, version) VALUES ${keyKeys.map(() => '(?, ?, 0)').join(', ')} ON CONFLICT (user_id, api_key_id) DO NOTHING`,
      keyKeys.flat(),
    );
  }
  const keyRows = await lockRows(trx, d, KEY_WINDOW_ROWS, keyKeys);
  const quotaCharged = charged.filter((i) => items[i]!.mode === 'balance' && items[i]!.platform !== null);
  const quotaRows = await lockRows(
    trx,
    d,
    QUOTAS,
    quotaCharged.map((i) => quotaKey(items[i]!)),
  );

  // 3. The charges, in arrival order, on the rows as read.
  const targets = {
    accounts: new Map<string, Target<BalanceEntity>>(),
    subscriptions: new Map<string, Target<SubscriptionEntity>>(),
    keys: new Map<string, Target<ApiKeyWindowsEntity>>(),
    quotas: new Map<string, Target<PlatformQuotaEntity>>(),
  };
  const target = <E>(map: Map<string, Target<E>>, key: string, read: () => E, i: number): Target<E> => {
    let t = map.get(key);
    if (!t) {
      t = { entity: read(), applied: 0, lastItem: i, lastTime: items[i]!.time };
      map.set(key, t);
    }
    t.applied++;
    t.lastItem = i;
    t.lastTime = items[i]!.time;
    return t;
  };
  // `charged` is in arrival (index) order already: primaries are collected in index order.
  for (const i of charged) {
    const s = items[i]!;
    if (s.mode === 'balance') {
      const key = keyOf(accountKey(s));
      const t = target(targets.accounts, key, () => toBalance(d, accountRows.get(key)!), i);
      t.entity.balance -= s.costUnits;
    } else {
      const key = keyOf(subscriptionKey(s));
      const t = target(targets.subscriptions, key, () => toSubscription(d, subscriptionRows.get(key)!), i);
      const isCard = isOneTimeDailyCard(t.entity.startsAtMs, t.entity.expiresAtMs);
      addToEntityWindows(t.entity as unknown as Record<string, unknown>, SUBSCRIPTION_WINDOWS, s.costUnits, s.time, isCard);
    }
    if (s.trackKeyWindows && s.apiKeyId !== '') {
      const key = keyOf(keyWindowKey(s));
      const t = target(targets.keys, key, () => toApiKeyWindows(d, keyRows.get(key)), i);
      addToEntityWindows(t.entity as unknown as Record<string, unknown>, KEY_WINDOWS, s.costUnits, s.time);
    }
    if (s.mode === 'balance' && s.platform !== null) {
      const key = keyOf(quotaKey(s));
      const row = quotaRows.get(key);
      // Only an existing quota row is charged: users without a quota get no row.
      if (row !== undefined)
        addToEntityWindows(
          target(targets.quotas, key, () => toPlatformQuota(d, row), i).entity as unknown as Record<string, unknown>,
          QUOTA_WINDOWS,
          s.costUnits,
          s.time,
        );
    }
  }

  // 4. One write per table, each row once.
  const split = (key: string) => key.split('\u0000');
  await writeRows(
    trx,
    d,
    ACCOUNTS,
    [
      ['balance', 'money'],
      ['updated_at_ms', 'bigint'],
    ],
    [...targets.accounts].map(([key, t]) => ({ key: split(key), values: [d.money(t.entity.balance), t.lastTime.nowMs], applied: t.applied })),
  );
  // Subscriptions, key windows and quotas: their window columns, in the same shape.
  const writeWindowRows = <E>(spec: TableSpec, windows: readonly WindowColumns[], map: Map<string, Target<E>>) =>
    writeRows(
      trx,
      d,
      spec,
      windowColumns(windows),
      [...map].map(([key, t]) => ({ key: split(key), values: windowValues(d, t.entity as unknown as Record<string, unknown>, windows), applied: t.applied })),
    );
  await writeWindowRows(SUBSCRIPTIONS, SUBSCRIPTION_WINDOWS, targets.subscriptions);
  await writeWindowRows(KEY_WINDOW_ROWS, KEY_WINDOWS, targets.keys);
  await writeWindowRows(QUOTAS, QUOTA_WINDOWS, targets.quotas);

  // 5. Receipts: each row goes to the cache once, with the receipt of the last settlement on it.
  for (const i of charged) outcomes[i] = { ok: true, result: { duplicate: false, ...base(i) } };
  const attach = <E extends { version: number }>(map: Map<string, Target<E>>, field: 'balance' | 'subscription' | 'apiKeyWindows' | 'platformQuota') => {
    for (const t of map.values()) {
      const outcome = outcomes[t.lastItem] as { ok: true; result: SettlementResult };
      (outcome.result as unknown as Record<string, unknown>)[field] = { ...t.entity, version: t.entity.version + t.applied };
    }
  };
  attach(targets.accounts, 'balance');
  attach(targets.subscriptions, 'subscription');
  attach(targets.keys, 'apiKeyWindows');
  attach(targets.quotas, 'platformQuota');

  // 6. Repeats within the batch: the same content is the duplicate, other content the conflict.
  for (const i of repeats) {
    const s = items[i]!;
    const key = logKey(i);
    const primary = primaryOf.get(key)!;
    const first = outcomes[primary]!;
    const committed = logIdOf.has(key) && !missing.has(primary) ? fingerprints[primary] : storedFingerprint.get(key);
    if (committed === undefined || (!first.ok && !(first.error instanceof SettlementConflictError))) {
      outcomes[i] = { ok: false, error: new RepeatOfFailedSettlement() };
    } else {
      outcomes[i] =
        committed === fingerprints[i]
          ? { ok: true, result: { duplicate: true, ...base(i) } }
          : { ok: false, error: new SettlementConflictError(s.requestId, s.apiKeyId) };
    }
  }
  return outcomes as BatchOutcome[];
}

/**
 * A repeat whose first occurrence in the same batch failed alone (its account was missing): one by one
 * it would run after that failure and before the settlements behind it, so the caller rolls the batch
 * back and commits it in two parts, split before this one.
 */
export class RepeatOfFailedSettlement extends Error {
  override readonly name = 'RepeatOfFailedSettlement';
}

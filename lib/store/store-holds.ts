// Reservations held in the store (docs/holds.md): the same admission rule as the cache's reserve
// script, as guarded UPDATEs in one transaction. Each hold is a row of its own and adds its amount
// to `held` on every row it counts against; releasing (or expiring) it takes exactly that back.
import type { Knex } from 'knex';
import { normalizeId, normalizePlatform } from '../validate.js';
import type { EntityWrite, ReservationDimension, StoreHoldRequest, StoreHoldResult } from '../types.js';
import type { Dialect } from './dialect.js';
import { toApiKeyWindows, toBalance, toPlatformQuota, toSubscription, type Row } from './rows.js';
import { StoreDataError } from './store-errors.js';
import { TABLES } from './tables.js';
import { windowOf } from './window-sql.js';

type HoldTarget = ReservationDimension['entity'];

/** Where a target lives, and how its row becomes an entity again. */
interface TargetRow {
  table: string;
  key: string;
  keyBindings: unknown[];
  /** Rows are locked in this order (then by key), the order settlements use: no deadlock between them. */
  rank: number;
  write(d: Dialect, row: Row): EntityWrite;
}

function targetRow(ref: HoldTarget): TargetRow {
  switch (ref.kind) {
    case 'balance':
      return { table: TABLES.accounts, key: 'user_id = ?', keyBindings: [ref.userId], rank: 0, write: (d, row) => ({ ref, value: toBalance(d, row) }) };
    case 'subscription':
      return {
        table: TABLES.subscriptions,
        key: 'user_id = ? AND group_id = ?',
        keyBindings: [ref.userId, ref.groupId],
        rank: 0,
        write: (d, row) => ({ ref, value: toSubscription(d, row) }),
      };
    case 'apiKeyWindows':
      return {
        table: TABLES.apiKeyWindows,
        key: 'user_id = ? AND api_key_id = ?',
        keyBindings: [ref.userId, ref.apiKeyId],
        rank: 1,
        write: (d, row) => ({ ref, value: toApiKeyWindows(d, row) }),
      };
    case 'platformQuota':
      return {
        table: TABLES.platformQuotas,
        key: 'user_id = ? AND platform = ?',
        keyBindings: [ref.userId, ref.platform],
        rank: 2,
        write: (d, row) => ({ ref, value: toPlatformQuota(d, row) }),
      };
  }
}

/** The columns of a window dimension's window on its row (storeHoldOf has checked that the row has it). */
const columnsOf = (dimension: Extract<ReservationDimension, { kind: 'window' }>) => windowOf(dimension.entity.kind, dimension.window)!;

const refKeyOf = (ref: HoldTarget): string => JSON.stringify(ref);

/** A denial inside the transaction: thrown to roll back what the hold already wrote. */
class HoldDenied extends Error {
  constructor(
    readonly dimension: string,
    readonly availableUnits: bigint,
  ) {
    super(`store hold denied by ${dimension}`);
  }
}

/** Room left under one dimension on a row as it is now: what the guard of holdIn compared. */
function available(d: Dialect, table: string, row: Row | undefined, dimension: ReservationDimension): bigint {
  if (row === undefined) return 0n;
  const held = d.decodeMoney(row.held, `${table}.held`);
  if (dimension.kind === 'balance') return d.decodeMoney(row.balance, `${table}.balance`) - held;
  const { usage, start } = columnsOf(dimension);
  const startMs = row[start] === null ? null : Number(row[start]);
  const used = startMs === null || startMs < dimension.expiryThreshold ? 0n : d.decodeMoney(row[usage], `${table}.${usage}`);
  return dimension.limit - used - held;
}

/**
 * Holds `request.amount` against every dimension, or nothing: one guarded UPDATE per row (all of its
 * dimensions in its WHERE), rows in a fixed order; the first row whose guard fails rolls it all back.
 * Expired holds of the user are taken back first, so they never refuse this one.
 */
export async function holdIn(trx: Knex.Transaction, d: Dialect, request: StoreHoldRequest): Promise<StoreHoldResult> {
  const writes = await releaseExpiredOfUser(trx, d, request.userId, request.nowMs);
  const groups = new Map<string, { ref: HoldTarget; target: TargetRow; dimensions: ReservationDimension[] }>();
  for (const dimension of request.dimensions) {
    const key = refKeyOf(dimension.entity);
    const group = groups.get(key) ?? { ref: dimension.entity, target: targetRow(dimension.entity), dimensions: [] };
    group.dimensions.push(dimension);
    groups.set(key, group);
  }
  const ordered = [...groups.entries()].sort(([a, x], [b, y]) => x.target.rank - y.target.rank || (a < b ? -1 : a > b ? 1 : 0));
  const expiresAtMs = request.nowMs + request.ttlMs;
  const amount = d.money(request.amount);
  await d.rows(
    trx,
    `INSERT INTO ${TABLES.storeHolds} (id, user_id, amount, targets, expires_at_ms, created_at_ms) VALUES (?, ?, ${d.moneyParam}, ?, ${d.bigintParam}, ${d.bigintParam})`,
    [request.leaseId, request.userId, amount, JSON.stringify(ordered.map(([, group]) => group.ref)), expiresAtMs, request.nowMs],
  );
  for (const [, { ref, target, dimensions }] of ordered) {
    // A key that was never used has no row yet: it holds nothing and has used nothing.
    if (ref.kind === 'apiKeyWindows') {
      await d.rows(
        trx,
        `INSERT INTO ${target.table} (user_id, api_key_id, version) VALUES (?, ?, 0) ON CONFLICT (user_id, api_key_id) DO NOTHING`,
        target.keyBindings,
      );
    }
    const guards: string[] = [];
    const guardBindings: unknown[] = [];
    for (const dimension of dimensions) {
      if (dimension.kind === 'balance') {
        guards.push(`balance - held - ${d.moneyParam} >= 0`);
        guardBindings.push(amount);
      } else {
        const { usage, start } = columnsOf(dimension);
        guards.push(`(CASE WHEN ${start} IS NULL OR ${start} < ${d.bigintParam} THEN 0 ELSE ${usage} END) + held + ${d.moneyParam} <= ${d.moneyParam}`);
        guardBindings.push(dimension.expiryThreshold, amount, d.money(dimension.limit));
      }
    }
    const [row] = await d.rows(
      trx,
      `UPDATE ${target.table} SET held = held + ${d.moneyParam}, version = version + 1 WHERE ${target.key} AND ${guards.join(' AND ')} RETURNING *`,
      [amount, ...target.keyBindings, ...guardBindings],
    );
    if (row === undefined) {
      const [current] = await d.rows(trx, `SELECT * FROM ${target.table} WHERE ${target.key}`, target.keyBindings);
      const full = dimensions.find((dimension) => available(d, target.table, current, dimension) < request.amount) ?? dimensions[0]!;
      throw new HoldDenied(full.name, available(d, target.table, current, full));
    }
    writes.push(target.write(d, row));
  }
  return { outcome: 'reserved', expiresAtMs, writes };
}

/** holdIn with its denial as a result (the transaction has rolled back by then). */
export async function denialOf(run: () => Promise<StoreHoldResult>): Promise<StoreHoldResult> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof HoldDenied) return { outcome: 'denied', dimension: err.dimension, availableUnits: err.availableUnits };
    throw err;
  }
}

/**
 * Takes one hold back: its row deleted, its amount off every row it was on. Null when it is not
 * there. A hold whose row cannot be read throws StoreDataError before anything is written.
 */
export async function releaseIn(trx: Knex.Transaction, d: Dialect, userId: string, holdId: string): Promise<EntityWrite[] | null> {
  const lock = d.name === 'postgresql' ? ' FOR UPDATE' : '';
  const [hold] = await d.rows(trx, `SELECT amount, targets FROM ${TABLES.storeHolds} WHERE id = ? AND user_id = ?${lock}`, [holdId, userId]);
  if (hold === undefined) return null;
  const amount = d.money(d.decodeMoney(hold.amount, `${TABLES.storeHolds}.amount`));
  const targets = parseTargets(hold.targets, userId);
  // Two releases of one hold: the second finds it deleted and writes nothing.
  const [deleted] = await d.rows(trx, `DELETE FROM ${TABLES.storeHolds} WHERE id = ? AND user_id = ? RETURNING id`, [holdId, userId]);
  if (deleted === undefined) return null;
  const writes: EntityWrite[] = [];
  for (const ref of targets) {
    const target = targetRow(ref);
    const [row] = await d.rows(
      trx,
      `UPDATE ${target.table} SET held = CASE WHEN held > ${d.moneyParam} THEN held - ${d.moneyParam} ELSE 0 END, version = version + 1 WHERE ${target.key} RETURNING *`,
      [amount, amount, ...target.keyBindings],
    );
    // A row deleted since (by an administrator) has nothing left to take back.
    if (row !== undefined) writes.push(target.write(d, row));
  }
  return writes;
}

/** Moves the expiry of the listed holds still there to `expiresAtMs` (never earlier); the ids not there. */
export async function renewIn(trx: Knex.Transaction, d: Dialect, holdIds: readonly string[], expiresAtMs: number): Promise<string[]> {
  if (holdIds.length === 0) return [];
  const list = holdIds.map(() => '?').join(', ');
  await d.rows(trx, `UPDATE ${TABLES.storeHolds} SET expires_at_ms = ${d.bigintParam} WHERE id IN (${list}) AND expires_at_ms < ${d.bigintParam}`, [
    expiresAtMs,
    ...holdIds,
    expiresAtMs,
  ]);
  const present = new Set((await d.rows(trx, `SELECT id FROM ${TABLES.storeHolds} WHERE id IN (${list})`, [...holdIds])).map((row) => String(row.id)));
  return holdIds.filter((id) => !present.has(id));
}

/** In id order, so two transactions of one user take them back in the same order (no deadlock). An unreadable one stays. */
async function releaseExpiredOfUser(trx: Knex.Transaction, d: Dialect, userId: string, nowMs: number): Promise<EntityWrite[]> {
  const expired = await d.rows(trx, `SELECT id FROM ${TABLES.storeHolds} WHERE user_id = ? AND expires_at_ms <= ${d.bigintParam} ORDER BY id`, [userId, nowMs]);
  const writes: EntityWrite[] = [];
  for (const { id } of expired) {
    try {
      writes.push(...((await releaseIn(trx, d, userId, String(id))) ?? []));
    } catch (err) {
      // Left for an operator (the sweep reports it); it only makes this user's admission stricter.
      if (!(err instanceof StoreDataError)) throw err;
    }
  }
  return writes;
}

/** Expired holds after the key `after` (none: from the start), oldest first, as (user, id) pairs to release one transaction each. */
export async function expiredHolds(
  db: Knex,
  d: Dialect,
  nowMs: number,
  limit: number,
  after?: { expiresAtMs: number; id: string },
): Promise<{ userId: string; holdId: string; expiresAtMs: number }[]> {
  const from = after ? ` AND (expires_at_ms > ${d.bigintParam} OR (expires_at_ms = ${d.bigintParam} AND id > ?))` : '';
  const rows = await d.rows(
    db,
    `SELECT id, user_id, expires_at_ms FROM ${TABLES.storeHolds} WHERE expires_at_ms <= ${d.bigintParam}${from} ORDER BY expires_at_ms, id LIMIT ?`,
    [nowMs, ...(after ? [after.expiresAtMs, after.expiresAtMs, after.id] : []), limit],
  );
  return rows.map((row) => ({ userId: String(row.user_id), holdId: String(row.id), expiresAtMs: Number(row.expires_at_ms) }));
}

/** The stored target list, checked as strictly as input: it names rows that SQL will be run on. */
function parseTargets(text: unknown, userId: string): HoldTarget[] {
  const column = `${TABLES.storeHolds}.targets`;
  let value: unknown;
  try {
    value = JSON.parse(String(text));
  } catch {
    throw new StoreDataError(column, 'not JSON');
  }
  if (!Array.isArray(value)) throw new StoreDataError(column, 'not a list');
  try {
    return value.map((item: Record<string, unknown>): HoldTarget => {
      if (item?.userId !== userId) throw new StoreDataError(column, 'names another user');
      switch (item.kind) {
        case 'balance':
          return { kind: 'balance', userId };
        case 'subscription':
          return { kind: 'subscription', userId, groupId: normalizeId(item.groupId, 'groupId') };
        case 'apiKeyWindows':
          return { kind: 'apiKeyWindows', userId, apiKeyId: normalizeId(item.apiKeyId, 'apiKeyId') };
        case 'platformQuota':
          return { kind: 'platformQuota', userId, platform: normalizePlatform(item.platform, 'platform') };
        default:
          throw new StoreDataError(column, 'has an unknown kind');
      }
    });
  } catch (err) {
    throw err instanceof StoreDataError ? err : new StoreDataError(column, (err as Error).message, { cause: err });
  }
}

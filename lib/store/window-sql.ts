// SET clauses for window-aware updates: the expiry test runs inside the UPDATE, so no value is read, changed in the app and written back.
import type { ReservationDimension, ReservationWindow, TimeContext } from '../types.js';
import { DAY_MS, expiryThreshold, newWindowStart, WINDOWS, type WindowRule } from '../windows.js';
import type { Dialect } from './dialect.js';

/** One window of a row: its name, usage column, window-start column and the rule that says when it is over. */
export interface WindowColumns {
  readonly window: ReservationWindow;
  readonly usage: string;
  readonly start: string;
  readonly rule: WindowRule;
  /**
   * The rule that replaces `rule` on a row of a one-time daily card (isOneTimeDailyCard in
   * lib/windows.ts, read from the row's own starts_at_ms and expires_at_ms).
   */
  readonly cardRule?: WindowRule;
}

/** The rule of one window on a row with this term: `cardRule` when the row is a one-time daily card. */
export function ruleOnRow(w: WindowColumns, isCard: boolean): WindowRule {
  return isCard && w.cardRule !== undefined ? w.cardRule : w.rule;
}

export const SUBSCRIPTION_WINDOWS: readonly WindowColumns[] = [
  { window: 'daily', usage: 'daily_usage', start: 'daily_start_ms', rule: WINDOWS.subscriptionDaily, cardRule: WINDOWS.subscriptionCardDaily },
  { window: 'weekly', usage: 'weekly_usage', start: 'weekly_start_ms', rule: WINDOWS.subscriptionWeekly },
  { window: 'monthly', usage: 'monthly_usage', start: 'monthly_start_ms', rule: WINDOWS.subscriptionMonthly },
];

export const QUOTA_WINDOWS: readonly WindowColumns[] = [
  { window: 'daily', usage: 'daily_usage', start: 'daily_start_ms', rule: WINDOWS.quotaDaily },
  { window: 'weekly', usage: 'weekly_usage', start: 'weekly_start_ms', rule: WINDOWS.quotaWeekly },
  { window: 'monthly', usage: 'monthly_usage', start: 'monthly_start_ms', rule: WINDOWS.quotaMonthly },
];

export const KEY_WINDOWS: readonly WindowColumns[] = [
  { window: '5h', usage: 'usage_5h', start: 'start_5h_ms', rule: WINDOWS.key5h },
  { window: '1d', usage: 'usage_1d', start: 'start_1d_ms', rule: WINDOWS.key1d },
  { window: '7d', usage: 'usage_7d', start: 'start_7d_ms', rule: WINDOWS.key7d },
];

/** The windows of each kind of row that has them. */
export const WINDOWS_OF: Readonly<Record<Extract<ReservationDimension, { kind: 'window' }>['entity']['kind'], readonly WindowColumns[]>> = {
  subscription: SUBSCRIPTION_WINDOWS,
  platformQuota: QUOTA_WINDOWS,
  apiKeyWindows: KEY_WINDOWS,
};

/** The columns of one named window of a kind of row; undefined when that row has no such window. */
export function windowOf(kind: string, window: unknown): WindowColumns | undefined {
  return (WINDOWS_OF as Record<string, readonly WindowColumns[] | undefined>)[kind]?.find((w) => w.window === window);
}

export interface SqlFragment {
  sql: string;
  bindings: unknown[];
}

/**
 * `usage = CASE WHEN <expired> THEN cost ELSE usage + cost END, start = CASE WHEN <expired> THEN
 * newStart ELSE start END` per window: an expired (or never started) window restarts at this
 * cost. Every right-hand side sees the row as it was before the statement, so the two CASEs agree.
 * Thresholds and new starts come from lib/windows.ts (the injected clock), never the database's
 * NOW(). `table` qualifies the old values (needed inside ON CONFLICT DO UPDATE).
 */
export function addToWindows(d: Dialect, table: string, windows: readonly WindowColumns[], cost: bigint, time: TimeContext): SqlFragment {
  const parts: string[] = [];
  const bindings: unknown[] = [];
  for (const w of windows) {
    const start = `${table}.${w.start}`;
    const threshold = byTerm(d, table, w, (rule) => ({ sql: d.bigintParam, bindings: [expiryThreshold(rule, time)] }));
    const expired = `${start} IS NULL OR ${start} < ${threshold.sql}`;
    parts.push(`${w.usage} = CASE WHEN ${expired} THEN ${d.moneyParam} ELSE ${table}.${w.usage} + ${d.moneyParam} END`);
    bindings.push(...threshold.bindings, d.money(cost), d.money(cost));
    const restart = byTerm(d, table, w, (rule) => restartedStart(d, start, rule, time));
    parts.push(`${w.start} = CASE WHEN ${expired} THEN ${restart.sql} ELSE ${start} END`);
    bindings.push(...threshold.bindings, ...restart.bindings);
  }
  return { sql: parts.join(', '), bindings };
}

/**
 * `of(rule)` for the window's rule; for a window with a card rule, a CASE that picks between the
 * two by the row's own term, so one statement serves cards and longer plans alike.
 */
function byTerm(d: Dialect, table: string, w: WindowColumns, of: (rule: WindowRule) => SqlFragment): SqlFragment {
  const plain = of(w.rule);
  if (w.cardRule === undefined) return plain;
  const card = of(w.cardRule);
  return {
    sql: `(CASE WHEN ${table}.expires_at_ms - ${table}.starts_at_ms <= ${d.bigintParam} THEN ${card.sql} ELSE ${plain.sql} END)`,
    bindings: [DAY_MS, ...card.bindings, ...plain.bindings],
  };
}

/**
 * The start of a window restarted at `time`, as SQL over the old start: newWindowStart's rule, with
 * a term-aligned window advanced by whole periods from its old start. The quotient is cast, so it
 * is whole on SQLite too (which may bind the numbers as reals); it is never negative, as the old
 * start of an expired window is at or before now.
 */
function restartedStart(d: Dialect, start: string, rule: WindowRule, time: TimeContext): SqlFragment {
  if (rule.kind !== 'rolling' || rule.anchor !== 'term') return { sql: d.bigintParam, bindings: [newWindowStart(rule, time)] };
  const now = time.nowMs;
  return {
    sql: `CASE WHEN ${start} IS NULL OR ${start} > ${d.bigintParam} THEN ${d.bigintParam} ELSE ${start} + CAST((${d.bigintParam} - ${start}) / ${d.bigintParam} AS BIGINT) * ${d.bigintParam} END`,
    bindings: [now, now, now, rule.lengthMs, rule.lengthMs],
  };
}

/** Values of a row created by its first charge: every window starts here, at this cost. */
export function firstWindowValues(d: Dialect, windows: readonly WindowColumns[], cost: bigint, time: TimeContext): SqlFragment {
  const parts: string[] = [];
  const bindings: unknown[] = [];
  for (const w of windows) {
    parts.push(d.moneyParam, d.bigintParam);
    bindings.push(d.money(cost), newWindowStart(w.rule, time));
  }
  return { sql: parts.join(', '), bindings };
}

/**
 * For resetting expired windows: SET clauses that zero the usage and null the start of each window
 * that was started AND has expired (never-started windows are left alone, docs/behaviour.md#api-key-windows), and the
 * WHERE condition "at least one such window", so that nothing (not even the version) changes
 * otherwise.
 */
export function resetExpiredWindows(d: Dialect, windows: readonly WindowColumns[], time: TimeContext): { set: SqlFragment; where: SqlFragment } {
  const set: string[] = [];
  const setBindings: unknown[] = [];
  const where: string[] = [];
  const whereBindings: unknown[] = [];
  for (const w of windows) {
    const expired = `${w.start} IS NOT NULL AND ${w.start} < ${d.bigintParam}`;
    const threshold = expiryThreshold(w.rule, time);
    set.push(`${w.usage} = CASE WHEN ${expired} THEN 0 ELSE ${w.usage} END`, `${w.start} = CASE WHEN ${expired} THEN NULL ELSE ${w.start} END`);
    setBindings.push(threshold, threshold);
    where.push(`(${expired})`);
    whereBindings.push(threshold);
  }
  return { set: { sql: set.join(', '), bindings: setBindings }, where: { sql: where.join(' OR '), bindings: whereBindings } };
}

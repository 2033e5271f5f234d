// Pure decision functions of the checks (docs/behaviour.md): entity + limits + time in, a record or a denial out.
import { BillingError, type BillingErrorCode } from './errors.js';
import { formatUsd } from './money.js';
import type { ApiKeyLimits, GroupLimits } from './subject.js';
import type { ApiKeyWindowsEntity, PlatformQuotaEntity, SubscriptionEntity, TimeContext } from './types.js';
import { apiKeyWindowSpecs, platformQuotaWindows, subscriptionWindows, type WindowSpec } from './window-specs.js';
import { WINDOWS, effectiveUsage, isWindowExpired, newWindowStart, secondsUntil, windowResetAt } from './windows.js';

export type CheckName = 'breaker' | 'balance' | 'subscription' | 'platformQuota' | 'apiKeyWindows' | 'reservation' | 'concurrency' | 'rpm';
/** Every check name, in chain order (the compiler keeps the list complete). */
export const CHECK_NAME_LIST = Object.keys({
  breaker: 1,
  balance: 1,
  subscription: 1,
  platformQuota: 1,
  apiKeyWindows: 1,
  reservation: 1,
  concurrency: 1,
  rpm: 1,
} satisfies Record<CheckName, 1>) as readonly CheckName[];
export type CheckOutcome = 'allowed' | 'denied' | 'skipped' | 'failed_open' | 'shadow_deny';

/** One window of a check as evaluated: amounts as decimal strings (RPM: request counts). */
export interface WindowReport {
  window: string;
  limit: string | null;
  usage: string;
  resetsAtMs: number | null;
}

/** What one check decided and why (ctx.state.billing.decision.checks). */
export interface CheckRecord {
  check: CheckName;
  outcome: CheckOutcome;
  code?: BillingErrorCode;
  /** Why a check was skipped or failed open. */
  reason?: string;
  /** Where its data came from. */
  source?: 'cache' | 'store' | 'subject' | 'none';
  windows?: WindowReport[];
}

/**
 * A window as evaluated, in exact units: 1e-8 USD (lib/money.ts) for spend windows, requests for
 * RPM. The checks keep these and format decimal strings only when someone reads the records: every
 * response's RateLimit fields need the numbers, few requests ever need the strings.
 */
export type WindowEvaluation =
  | { window: string; usd: true; limit: bigint | null; usage: bigint; resetsAtMs: number | null }
  | { window: string; usd: false; limit: number | null; usage: number; resetsAtMs: number | null };

/** A CheckRecord before formatting: its windows in exact units. */
export interface CheckEvaluation extends Omit<CheckRecord, 'windows'> {
  windows?: WindowEvaluation[];
}

/** The public record of an evaluation, amounts as decimal strings with 8 places (RPM: counts). */
export function toCheckRecord(evaluation: CheckEvaluation): CheckRecord {
  const { windows, ...rest } = evaluation;
  if (windows === undefined) return rest;
  return {
    ...rest,
    windows: windows.map(({ window, usd, limit, usage, resetsAtMs }) => ({
      window,
      limit: limit === null ? null : usd ? formatUsd(limit) : String(limit),
      usage: usd ? formatUsd(usage) : String(usage),
      resetsAtMs,
    })),
  };
}

/** A denial carries the evaluation that explains it. */
export class CheckDenial {
  constructor(
    readonly record: CheckEvaluation,
    readonly error: BillingError,
  ) {}
}

/**
 * Evaluates windows in order; the first with usage ≥ limit denies. Expired windows count 0.
 * `withResetMetadata` adds `windowResetsAt` (platform quota, docs/behaviour.md#platform-quota).
 */
function evaluateWindows(
  check: CheckName,
  specs: WindowSpec[],
  time: TimeContext,
  source: CheckRecord['source'],
  withResetMetadata: boolean,
): CheckEvaluation | CheckDenial {
  const windows: WindowEvaluation[] = [];
  let denial: { spec: WindowSpec; resetAtMs: number } | null = null;
  for (const spec of specs) {
    const usage = effectiveUsage(spec.rule, spec.usage, spec.startMs, time);
    const resetAtMs = spec.limit === null ? null : windowResetAt(spec.rule, spec.startMs, time);
    windows.push({ window: spec.window, usd: true, limit: spec.limit, usage, resetsAtMs: resetAtMs });
    if (!denial && spec.limit !== null && usage >= spec.limit) denial = { spec, resetAtMs: resetAtMs as number };
  }
  if (!denial) return { check, outcome: 'allowed', source, windows };
  const record: CheckEvaluation = { check, outcome: 'denied', code: denial.spec.code, source, windows };
  const retryAfter = secondsUntil(denial.resetAtMs, time.nowMs);
  const metadata: Record<string, unknown> = { window: denial.spec.window, limitUsd: formatUsd(denial.spec.limit as bigint) };
  if (withResetMetadata) metadata.windowResetsAt = new Date(denial.resetAtMs).toISOString();
  return new CheckDenial(record, new BillingError(denial.spec.code, { retryAfter, metadata }));
}

/** docs/behaviour.md#balance: balance ≤ 0, or below a positive reserve, is insufficient. */
export function decideBalance(balance: bigint, reserve: bigint, source: CheckRecord['source']): CheckEvaluation | CheckDenial {
  const windows: WindowEvaluation[] = [{ window: 'balance', usd: true, limit: reserve, usage: balance, resetsAtMs: null }];
  if (balance <= 0n || (reserve > 0n && balance < reserve)) {
    return new CheckDenial({ check: 'balance', outcome: 'denied', code: 'INSUFFICIENT_BALANCE', source, windows }, new BillingError('INSUFFICIENT_BALANCE'));
  }
  return { check: 'balance', outcome: 'allowed', source, windows };
}

/** docs/behaviour.md#subscription: validity first, then daily, weekly, monthly group limits. */
export function decideSubscription(
  entity: SubscriptionEntity,
  limits: GroupLimits,
  time: TimeContext,
  source: CheckRecord['source'],
): CheckEvaluation | CheckDenial {
  if (entity.status !== 'active' || time.nowMs >= entity.expiresAtMs) {
    return new CheckDenial({ check: 'subscription', outcome: 'denied', code: 'SUBSCRIPTION_INVALID', source }, new BillingError('SUBSCRIPTION_INVALID'));
  }
  return evaluateWindows('subscription', subscriptionWindows(entity, limits), time, source, false);
}

/** docs/behaviour.md#platform-quota: null = unlimited, 0 = blocked, > 0 = cap; usage ≥ limit denies. */
export function decidePlatformQuota(entity: PlatformQuotaEntity, time: TimeContext, source: CheckRecord['source']): CheckEvaluation | CheckDenial {
  return evaluateWindows('platformQuota', platformQuotaWindows(entity), time, source, true);
}

/** docs/behaviour.md#api-key-windows: 0 = unlimited; usage ≥ limit denies, 5 h first, then 1 d, then 7 d. */
export function decideApiKeyWindows(
  entity: ApiKeyWindowsEntity,
  limits: ApiKeyLimits,
  time: TimeContext,
  source: CheckRecord['source'],
): CheckEvaluation | CheckDenial {
  return evaluateWindows('apiKeyWindows', apiKeyWindowSpecs(entity, limits), time, source, false);
}

/** Whether any key window was started and has expired, so the store should restart it (never-started windows need none). */
export function apiKeyWindowsNeedReset(entity: ApiKeyWindowsEntity, time: TimeContext): boolean {
  return (
    (entity.start5hMs !== null && isWindowExpired(WINDOWS.key5h, entity.start5hMs, time)) ||
    (entity.start1dMs !== null && isWindowExpired(WINDOWS.key1d, entity.start1dMs, time)) ||
    (entity.start7dMs !== null && isWindowExpired(WINDOWS.key7d, entity.start7dMs, time))
  );
}

/** The cached sentinel for "no quota row": unlimited, zero usage, current window starts (docs/behaviour.md#platform-quota). */
export function platformQuotaSentinel(time: TimeContext): PlatformQuotaEntity {
  return {
    version: 0,
    sentinel: true,
    dailyLimit: null,
    weeklyLimit: null,
    monthlyLimit: null,
    dailyUsage: 0n,
    weeklyUsage: 0n,
    monthlyUsage: 0n,
    dailyStartMs: newWindowStart(WINDOWS.quotaDaily, time),
    weeklyStartMs: newWindowStart(WINDOWS.quotaWeekly, time),
    monthlyStartMs: time.nowMs,
  };
}

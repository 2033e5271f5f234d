// Which limits a reservation must fit under (docs/holds.md): built from the same entities and limits the
// checks just evaluated, and mapped back to the check's own denial when a dimension is full.
import { BillingError } from './errors.js';
import type { ApiKeyLimits, GroupLimits } from './subject.js';
import type { ApiKeyWindowsEntity, BalanceEntity, PlatformQuotaEntity, ReservationDimension, SubscriptionEntity, TimeContext } from './types.js';
import { apiKeyWindowSpecs, platformQuotaWindows, subscriptionWindows, type WindowSpec } from './window-specs.js';
import { effectiveUsage, expiryThreshold, secondsUntil, windowResetAt } from './windows.js';

/** A dimension plus how to deny when it is full. */
export interface PlannedDimension {
  dimension: ReservationDimension;
  denial(time: TimeContext): BillingError;
}

function windows(
  entity: Extract<ReservationDimension, { kind: 'window' }>['entity'],
  prefix: string,
  planned: WindowSpec[],
  held: bigint,
  time: TimeContext,
): PlannedDimension[] {
  const out: PlannedDimension[] = [];
  for (const w of planned) {
    if (w.limit === null) continue;
    const resetAtMs = windowResetAt(w.rule, w.startMs, time);
    out.push({
      dimension: {
        name: `${prefix}:${w.window}`,
        kind: 'window',
        entity,
        window: w.window,
        expiryThreshold: expiryThreshold(w.rule, time),
        limit: w.limit,
        // Store holds count in every window of their row, expired or not (docs/holds.md).
        fallbackUsed: effectiveUsage(w.rule, w.usage, w.startMs, time) + held,
      },
      denial: (now) =>
        new BillingError(w.code, {
          retryAfter: secondsUntil(resetAtMs, now.nowMs),
          metadata: { window: w.window, reserved: true, windowResetsAt: new Date(resetAtMs).toISOString() },
        }),
    });
  }
  return out;
}

export function balanceDimension(userId: string, entity: BalanceEntity): PlannedDimension {
  return {
    dimension: { name: 'bal', kind: 'balance', entity: { kind: 'balance', userId }, fallbackCapacity: entity.balance - (entity.held ?? 0n) },
    denial: () => new BillingError('INSUFFICIENT_BALANCE', { metadata: { reserved: true } }),
  };
}

export function subscriptionDimensions(
  userId: string,
  groupId: string,
  entity: SubscriptionEntity,
  limits: GroupLimits,
  time: TimeContext,
): PlannedDimension[] {
  return windows({ kind: 'subscription', userId, groupId }, `sub:${groupId}`, subscriptionWindows(entity, limits), entity.held ?? 0n, time);
}

export function platformQuotaDimensions(userId: string, platform: string, entity: PlatformQuotaEntity, time: TimeContext): PlannedDimension[] {
  return windows({ kind: 'platformQuota', userId, platform }, `pq:${platform}`, platformQuotaWindows(entity), entity.held ?? 0n, time);
}

export function apiKeyDimensions(userId: string, apiKeyId: string, entity: ApiKeyWindowsEntity, limits: ApiKeyLimits, time: TimeContext): PlannedDimension[] {
  return windows({ kind: 'apiKeyWindows', userId, apiKeyId }, `key:${apiKeyId}`, apiKeyWindowSpecs(entity, limits), entity.held ?? 0n, time);
}

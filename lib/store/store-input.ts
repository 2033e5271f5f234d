// Boundary checks for every store method: malformed input is refused with an error naming the field, before any SQL runs.
import { formatUsd, MAX_USD_UNITS } from '../money.js';
import { assertLeaseId } from '../cache/leases.js';
import type {
  PlatformQuotaLimits,
  ReservationDimension,
  SettlementInput,
  StoreHoldRequest,
  SubscriptionInput,
  SubscriptionStatus,
  TimeContext,
} from '../types.js';
import { BillingValidationError, normalizeId, normalizePlatform, normalizeRequestId } from '../validate.js';
import { assertTimeZone } from '../windows.js';
import { windowOf } from './window-sql.js';

const MAX_MODEL_LENGTH = 128;
const MAX_LIST_LIMIT = 1000;
// Epoch ms of the years 1000 and 9999: the range lib/windows.ts computes in.
const MIN_TIME_MS = -30_610_224_000_000;
const MAX_TIME_MS = 253_402_128_000_000;
const STATUSES: readonly SubscriptionStatus[] = ['active', 'expired', 'revoked', 'suspended'];

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'bigint') return `${value}n`;
  return typeof value === 'object' && value !== null ? 'an object' : String(value);
}

function fail(field: string, expected: string, value: unknown): never {
  throw new BillingValidationError(field, `${field} must be ${expected}, got ${show(value)}`);
}

export const userIdOf = (value: unknown): string => normalizeId(value, 'userId');
export const groupIdOf = (value: unknown): string => normalizeId(value, 'groupId');
export const apiKeyIdOf = (value: unknown): string => normalizeId(value, 'apiKeyId');
export const platformOf = (value: unknown): string => normalizePlatform(value, 'platform');

/** An amount in units of 1e-8 USD: a bigint within [min, MAX_USD_UNITS]. */
export function unitsOf(value: unknown, field: string, min: bigint): bigint {
  if (typeof value !== 'bigint') fail(field, 'a bigint amount of 1e-8 USD units', value);
  if (value < min || value > MAX_USD_UNITS) fail(field, `between ${formatUsd(min)} and ${formatUsd(MAX_USD_UNITS)} USD (in 1e-8 units)`, value);
  return value;
}

export function epochMsOf(value: unknown, field: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= MIN_TIME_MS && value <= MAX_TIME_MS) return value;
  return fail(field, 'an integer of epoch milliseconds between the years 1000 and 9999', value);
}

export function timeOf(value: unknown, field = 'time'): TimeContext {
  if (typeof value !== 'object' || value === null) fail(field, 'an object { nowMs, timezone }', value);
  const { nowMs, timezone } = value as Partial<TimeContext>;
  const checkedNow = epochMsOf(nowMs, `${field}.nowMs`);
  try {
    assertTimeZone(timezone as string, `${field}.timezone`);
  } catch (err) {
    throw new BillingValidationError(`${field}.timezone`, (err as Error).message);
  }
  return { nowMs: checkedNow, timezone: timezone as string };
}

function nullableString(value: unknown, field: string, max: number): string | null {
  if (value === undefined || value === null) return null;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (typeof value === 'string' && value.length >= 1 && value.length <= max && !/[\u0000-\u001f\u007f]/.test(value)) return value;
  return fail(field, `a string of 1-${max} characters without control characters`, value);
}

function tokensOf(value: unknown, field: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  return fail(field, 'a non-negative integer', value);
}

/** A settlement input as the store uses it: every optional field resolved. */
export type CheckedSettlement = Required<SettlementInput>;

export function settlementOf(input: SettlementInput): CheckedSettlement {
  if (typeof input !== 'object' || input === null) fail('settlement', 'an object', input);
  const mode = input.mode;
  if (mode !== 'balance' && mode !== 'subscription') fail('mode', '"balance" or "subscription"', mode);
  const groupId = input.groupId === null || input.groupId === undefined ? null : groupIdOf(input.groupId);
  if (mode === 'subscription' && groupId === null) fail('groupId', 'a group id in subscription mode', input.groupId);
  if (typeof input.trackKeyWindows !== 'boolean') fail('trackKeyWindows', 'a boolean', input.trackKeyWindows);
  if (input.charge !== undefined && typeof input.charge !== 'boolean') fail('charge', 'a boolean', input.charge);
  return {
    requestId: normalizeRequestId(input.requestId, 'requestId'),
    apiKeyId: input.apiKeyId === '' ? '' : apiKeyIdOf(input.apiKeyId),
    userId: userIdOf(input.userId),
    groupId,
    mode,
    costUnits: unitsOf(input.costUnits, 'costUnits', 0n),
    platform: input.platform === null || input.platform === undefined || input.platform === '' ? null : platformOf(input.platform),
    trackKeyWindows: input.trackKeyWindows,
    charge: input.charge ?? true,
    model: nullableString(input.model, 'model', MAX_MODEL_LENGTH),
    inputTokens: tokensOf(input.inputTokens, 'inputTokens'),
    outputTokens: tokensOf(input.outputTokens, 'outputTokens'),
    time: timeOf(input.time),
  };
}

export interface CheckedSubscription {
  userId: string;
  groupId: string;
  status: SubscriptionStatus;
  startsAtMs: number | null;
  expiresAtMs: number;
}

export function subscriptionOf(input: SubscriptionInput): CheckedSubscription {
  if (typeof input !== 'object' || input === null) fail('subscription', 'an object', input);
  const status = input.status ?? 'active';
  if (!STATUSES.includes(status)) fail('status', `one of ${STATUSES.join(', ')}`, status);
  return {
    userId: userIdOf(input.userId),
    groupId: groupIdOf(input.groupId),
    status,
    startsAtMs: input.startsAtMs === undefined ? null : epochMsOf(input.startsAtMs, 'startsAtMs'),
    expiresAtMs: epochMsOf(input.expiresAtMs, 'expiresAtMs'),
  };
}

/** Each limit: undefined = leave as it is, null = unlimited, a non-negative amount = the cap (0 blocks). */
export type CheckedLimit = bigint | null | undefined;

export function quotaLimitsOf(limits: PlatformQuotaLimits): { daily: CheckedLimit; weekly: CheckedLimit; monthly: CheckedLimit } {
  if (typeof limits !== 'object' || limits === null) fail('limits', 'an object { dailyLimit?, weeklyLimit?, monthlyLimit? }', limits);
  const known = new Set(['dailyLimit', 'weeklyLimit', 'monthlyLimit']);
  for (const key of Object.keys(limits)) if (!known.has(key)) fail('limits', 'an object with only dailyLimit, weeklyLimit, monthlyLimit', key);
  const limit = (value: unknown, field: string): CheckedLimit => (value === undefined || value === null ? value : unitsOf(value, field, 0n));
  return {
    daily: limit(limits.dailyLimit, 'dailyLimit'),
    weekly: limit(limits.weeklyLimit, 'weeklyLimit'),
    monthly: limit(limits.monthlyLimit, 'monthlyLimit'),
  };
}

export function rpmOverrideOf(value: unknown): number | null {
  if (value === null) return null;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= 2_147_483_647) return value;
  return fail('rpmOverride', 'null or an integer from 0 to 2147483647', value);
}

export function listLimitOf(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= MAX_LIST_LIMIT) return value;
  return fail('limit', `an integer from 1 to ${MAX_LIST_LIMIT}`, value);
}

export function holdIdOf(value: unknown): string {
  assertLeaseId(value, 'holdId');
  return value;
}

/** A store hold as holdIn uses it: every id normalised, every dimension on the requesting user's rows. */
export function storeHoldOf(request: StoreHoldRequest): StoreHoldRequest {
  if (typeof request !== 'object' || request === null) fail('hold', 'an object', request);
  const userId = userIdOf(request.userId);
  const leaseId = holdIdOf(request.leaseId);
  const amount = unitsOf(request.amount, 'amount', 1n);
  if (!Number.isSafeInteger(request.ttlMs) || request.ttlMs <= 0) fail('ttlMs', 'a positive integer of ms', request.ttlMs);
  const nowMs = epochMsOf(request.nowMs, 'nowMs');
  if (!Array.isArray(request.dimensions) || request.dimensions.length === 0) fail('dimensions', 'a non-empty list', request.dimensions);
  const dimensions = request.dimensions.map((dimension): ReservationDimension => {
    const entity = dimension?.entity;
    if (!entity || normalizeId(entity.userId, 'dimension.entity.userId') !== userId) fail('dimension.entity', `a row of user ${userId}`, entity);
    if (dimension.kind === 'balance') {
      if (entity.kind !== 'balance') fail('dimension.entity.kind', '"balance" for a balance dimension', entity.kind);
      return { ...dimension, entity: { kind: 'balance', userId } };
    }
    if (dimension.kind !== 'window' || windowOf(entity.kind, dimension.window) === undefined) fail('dimension', 'a balance or a window of its row', dimension);
    unitsOf(dimension.limit, 'dimension.limit', 0n);
    if (!Number.isSafeInteger(dimension.expiryThreshold)) fail('dimension.expiryThreshold', 'an integer of epoch ms', dimension.expiryThreshold);
    const fields = entity as { groupId?: unknown; platform?: unknown; apiKeyId?: unknown };
    const ref: Extract<ReservationDimension, { kind: 'window' }>['entity'] =
      entity.kind === 'subscription'
        ? { kind: 'subscription', userId, groupId: groupIdOf(fields.groupId) }
        : entity.kind === 'platformQuota'
          ? { kind: 'platformQuota', userId, platform: platformOf(fields.platform) }
          : { kind: 'apiKeyWindows', userId, apiKeyId: apiKeyIdOf(fields.apiKeyId) };
    return { ...dimension, entity: ref };
  });
  return { userId, leaseId, amount, ttlMs: request.ttlMs, nowMs, dimensions };
}

// Administration writes (docs/architecture.md): each goes to the store, then puts the new versioned row into the
// cache (or invalidates it), so every instance sharing the cache sees it on the next request.
import type { CoreInternals } from './core-internals.js';
import { epochMsOf } from './store/store-input.js';
import { MoneyError, formatUsd, parseLimitUsd, parseUsd, type Usd } from './money.js';
import type { BillingId, PlatformQuotaLimits, SubscriptionEntity, SubscriptionStatus } from './types.js';
import { BillingValidationError, normalizeId, normalizePlatform } from './validate.js';

export interface UpsertSubscriptionInput {
  userId: BillingId;
  groupId: BillingId;
  expiresAt: Date | number;
  startsAt?: Date | number;
  status?: SubscriptionStatus;
}

export interface PlatformQuotaInput {
  /** USD; null or omitted = unlimited, 0 = fully blocked. */
  dailyLimitUsd?: Usd | null;
  weeklyLimitUsd?: Usd | null;
  monthlyLimitUsd?: Usd | null;
}

export interface SubscriptionView {
  subscriptionId: string;
  status: SubscriptionStatus;
  expiresAt: string;
  version: number;
}

const STATUSES: readonly SubscriptionStatus[] = ['active', 'expired', 'revoked', 'suspended'];

/** A Date or epoch milliseconds, checked by the store's own rule (years 1000-9999) before anything is written. */
function epochMs(value: unknown, field: string): number {
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms === 'number' && Number.isFinite(ms)) {
    try {
      return epochMsOf(Math.trunc(ms), field);
    } catch {
      // Named below with the forms accepted here.
    }
  }
  throw new BillingValidationError(field, `${field} must be a Date or epoch milliseconds between the years 1000 and 9999`);
}

/** A platform-quota limit: null = none, 0 = blocked, so an amount that would round to 0 is refused. */
function quotaLimit(value: Usd | null | undefined, field: string): bigint | null {
  if (value === undefined || value === null) return null;
  return parseLimitUsd(value, field);
}

export class BillingAdmin {
  constructor(private readonly core: CoreInternals) {}

  /** Adds a positive amount to the balance (creating the account); returns the new balance. */
  async topUp(userId: BillingId, amountUsd: Usd): Promise<string> {
    const id = normalizeId(userId, 'userId');
    const amount = parseUsd(amountUsd, 'amountUsd');
    if (amount <= 0n) throw new MoneyError('amountUsd must be positive for a top-up; use setBalance to lower a balance', 'amountUsd');
    const entity = await this.core.store.topUp(id, amount);
    await this.core.cacheSync.put({ kind: 'balance', userId: id }, entity);
    return formatUsd(entity.balance);
  }

  /** Sets the balance to an exact amount (creating the account); returns it. */
  async setBalance(userId: BillingId, amountUsd: Usd): Promise<string> {
    const id = normalizeId(userId, 'userId');
    const entity = await this.core.store.setBalance(id, parseUsd(amountUsd, 'amountUsd'));
    await this.core.cacheSync.put({ kind: 'balance', userId: id }, entity);
    return formatUsd(entity.balance);
  }

  /** Creates or replaces the (user, group) subscription; status defaults to 'active'. */
  async upsertSubscription(input: UpsertSubscriptionInput): Promise<SubscriptionView> {
    if (!input || typeof input !== 'object') throw new BillingValidationError('subscription', 'upsertSubscription needs { userId, groupId, expiresAt }');
    const userId = normalizeId(input.userId, 'userId');
    const groupId = normalizeId(input.groupId, 'groupId');
    const status = input.status ?? 'active';
    if (!STATUSES.includes(status)) throw new BillingValidationError('status', `status must be one of ${STATUSES.join(', ')}`);
    const entity: SubscriptionEntity = await this.core.store.upsertSubscription({
      userId,
      groupId,
      status,
      expiresAtMs: epochMs(input.expiresAt, 'expiresAt'),
      startsAtMs: input.startsAt === undefined ? this.core.options.clock.now() : epochMs(input.startsAt, 'startsAt'),
    });
    await this.core.cacheSync.put({ kind: 'subscription', userId, groupId }, entity);
    return { subscriptionId: entity.subscriptionId, status: entity.status, expiresAt: new Date(entity.expiresAtMs).toISOString(), version: entity.version };
  }

  /** Sets the user × platform quota limits (usages are kept). */
  async setPlatformQuota(userId: BillingId, platform: string, limits: PlatformQuotaInput): Promise<void> {
    const id = normalizeId(userId, 'userId');
    const name = normalizePlatform(platform);
    if (!limits || typeof limits !== 'object') throw new BillingValidationError('limits', 'setPlatformQuota needs a limits object');
    const parsed: PlatformQuotaLimits = {
      dailyLimit: quotaLimit(limits.dailyLimitUsd, 'dailyLimitUsd'),
      weeklyLimit: quotaLimit(limits.weeklyLimitUsd, 'weeklyLimitUsd'),
      monthlyLimit: quotaLimit(limits.monthlyLimitUsd, 'monthlyLimitUsd'),
    };
    const entity = await this.core.store.setPlatformQuota(id, name, parsed);
    await this.core.cacheSync.put({ kind: 'platformQuota', userId: id, platform: name }, entity);
  }

  /** A user's per-group RPM override: > 0 caps, 0 exempts from the group cap, null removes it. */
  async setRpmOverride(userId: BillingId, groupId: BillingId, value: number | null): Promise<void> {
    const uid = normalizeId(userId, 'userId');
    const gid = normalizeId(groupId, 'groupId');
    if (value !== null && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new BillingValidationError('value', 'RPM override must be a non-negative integer or null');
    }
    await this.core.store.setRpmOverride(uid, gid, value);
    await this.core.cacheSync.invalidate({ kind: 'rpmOverride', userId: uid, groupId: gid });
  }

  /** Zeroes every spend window of the key. */
  async resetApiKeyWindows(userId: BillingId, apiKeyId: BillingId): Promise<void> {
    const uid = normalizeId(userId, 'userId');
    const kid = normalizeId(apiKeyId, 'apiKeyId');
    const entity = await this.core.store.resetApiKeyWindows(uid, kid);
    await this.core.cacheSync.put({ kind: 'apiKeyWindows', userId: uid, apiKeyId: kid }, entity);
  }
}

// One request's pass through the checks (SPEC §1–§2): one batched cache read shared by every check,
// store loads through single-flight on a miss, and a record of what each check decided.
import { errorText } from './background-tasks.js';
import type { CoreInternals } from './core-internals.js';
import {
  CheckDenial, apiKeyWindowsNeedReset, decideApiKeyWindows, decideBalance, decidePlatformQuota, decideSubscription,
  platformQuotaSentinel, type CheckName, type CheckRecord,
} from './decisions.js';
import { BillingError } from './errors.js';
import type { NormalizedSubject } from './subject.js';
import type { CacheBatchResult, PlatformQuotaEntity, RpmOverride, TimeContext } from './types.js';

/** Errors thrown by a check as its denial; the middleware renders exactly these. */
const denials = new WeakSet<BillingError>();

export function isCheckDenial(error: unknown): error is BillingError {
  return error instanceof BillingError && denials.has(error);
}

export interface BillingDecision {
  allowed: boolean;
  checks: CheckRecord[];
}

/** Lazily provides the request's cancellation signal (only quota loads need it). */
export type SignalSource = () => AbortSignal | undefined;

export class BillingRequest {
  readonly decision: BillingDecision = { allowed: true, checks: [] };
  readonly time: TimeContext;
  #batch: Promise<CacheBatchResult | null> | undefined;

  constructor(
    private readonly core: CoreInternals,
    readonly subject: NormalizedSubject,
    private readonly signal: SignalSource = () => undefined,
  ) {
    this.time = core.time();
  }

  get simple(): boolean {
    return this.core.options.runMode === 'simple';
  }

  /** SPEC §1.2: open breaker → 503 before anything else runs. */
  breaker(): void {
    if (this.simple) return;
    if (this.core.breaker.allow()) {
      this.#record({ check: 'breaker', outcome: 'allowed' });
      return;
    }
    this.#deny(new CheckDenial({ check: 'breaker', outcome: 'denied', code: 'BILLING_SERVICE_ERROR' }, new BillingError('BILLING_SERVICE_ERROR', { metadata: { reason: 'circuit_open' } })));
  }

  /** SPEC §2.1 (balance mode only). */
  async balance(): Promise<void> {
    if (this.simple) return;
    if (this.subject.mode !== 'balance') return this.#skip('balance', 'subscription_mode');
    const { userId } = this.subject;
    const read = (await this.#readBatch())?.balance;
    let balance: bigint;
    let source: CheckRecord['source'] = 'cache';
    if (read?.hit) {
      balance = read.value.balance;
    } else {
      source = 'store';
      let entity;
      try {
        entity = await this.#load(`balance:${userId}`, async () => {
          const loaded = await this.core.store.getBalance(userId);
          if (loaded && read) this.core.cacheSync.fill({ kind: 'balance', userId }, loaded, read.generation);
          return loaded;
        });
      } catch (err) {
        return this.#infrastructureFailure('balance', err);
      }
      if (entity === null) {
        // The store answered: an unknown user is not an outage (SPEC §2.1 [ours]).
        this.core.breaker.recordSuccess();
        return this.#deny(new CheckDenial({ check: 'balance', outcome: 'denied', code: 'BILLING_SUBJECT_NOT_FOUND', source }, new BillingError('BILLING_SUBJECT_NOT_FOUND')));
      }
      balance = entity.balance;
    }
    this.core.breaker.recordSuccess();
    this.#apply(decideBalance(balance, this.core.options.minimumBalanceReserve, source));
  }

  /** SPEC §2.2 (subscription mode only). */
  async subscription(): Promise<void> {
    if (this.simple) return;
    const { mode, userId, groupId } = this.subject;
    if (mode !== 'subscription' || groupId === null) return this.#skip('subscription', 'balance_mode');
    const read = (await this.#readBatch())?.subscription;
    let source: CheckRecord['source'] = 'cache';
    let entity;
    if (read?.hit) {
      entity = read.value;
    } else {
      source = 'store';
      try {
        entity = await this.#load(`subscription:${userId}:${groupId}`, async () => {
          const loaded = await this.core.store.getActiveSubscription(userId, groupId, this.time);
          if (loaded && read) this.core.cacheSync.fill({ kind: 'subscription', userId, groupId }, loaded, read.generation);
          return loaded;
        });
      } catch (err) {
        return this.#infrastructureFailure('subscription', err);
      }
      if (entity === null) {
        // Expired or revoked since authentication: a denial, not an outage (SPEC §2.2 [ours]).
        this.core.breaker.recordSuccess();
        return this.#deny(new CheckDenial({ check: 'subscription', outcome: 'denied', code: 'SUBSCRIPTION_INVALID', source }, new BillingError('SUBSCRIPTION_INVALID')));
      }
    }
    this.core.breaker.recordSuccess();
    this.#apply(decideSubscription(entity, this.subject.groupLimits, this.time, source));
  }

  /** SPEC §2.3 (balance mode, platform given). Fails open. */
  async platformQuota(): Promise<void> {
    if (this.simple) return;
    const { mode, userId, platform } = this.subject;
    if (mode !== 'balance') return this.#skip('platformQuota', 'subscription_mode');
    if (platform === null) return this.#skip('platformQuota', 'no_platform');
    const read = (await this.#readBatch())?.platformQuota;
    if (read?.hit) return this.#apply(decidePlatformQuota(read.value, this.time, 'cache'));

    let row: PlatformQuotaEntity | null;
    try {
      row = await this.#load(`platformQuota:${userId}:${platform}`, async () => {
        const loaded = await this.core.store.getPlatformQuota(userId, platform);
        // Only when the cache read itself succeeded: a sentinel for "no row", else the row (SPEC §2.3.4–5).
        if (read) this.core.cacheSync.fill({ kind: 'platformQuota', userId, platform }, loaded ?? platformQuotaSentinel(this.time), read.generation);
        return loaded;
      }, this.signal());
    } catch (err) {
      if (err instanceof Error && err.name === 'AbortError') {
        // The client is gone; letting it through costs nothing (SPEC §2.3.2).
        return this.#record({ check: 'platformQuota', outcome: 'allowed', reason: 'cancelled', source: 'none' });
      }
      return this.#failOpen('platformQuota', err);
    }
    if (row === null) return this.#record({ check: 'platformQuota', outcome: 'allowed', reason: 'no_quota', source: 'store' });
    this.#apply(decidePlatformQuota(row, this.time, 'store'));
  }

  /** SPEC §2.4 (both modes, keys with a limit). Fails open. */
  async apiKeyWindows(): Promise<void> {
    if (this.simple) return;
    const { userId, apiKeyId, apiKeyLimits } = this.subject;
    if (apiKeyId === null || apiKeyLimits === null) return this.#skip('apiKeyWindows', 'no_key_limits');
    const read = (await this.#readBatch())?.apiKeyWindows;
    let source: CheckRecord['source'] = 'cache';
    let entity;
    if (read?.hit) {
      entity = read.value;
    } else {
      source = 'store';
      try {
        entity = await this.#load(`apiKeyWindows:${userId}:${apiKeyId}`, async () => {
          const loaded = await this.core.store.getApiKeyWindows(userId, apiKeyId);
          if (read) this.core.cacheSync.fill({ kind: 'apiKeyWindows', userId, apiKeyId }, loaded, read.generation);
          return loaded;
        });
      } catch (err) {
        return this.#failOpen('apiKeyWindows', err);
      }
    }
    if (apiKeyWindowsNeedReset(entity, this.time)) this.#resetKeyWindows(userId, apiKeyId);
    this.#apply(decideApiKeyWindows(entity, apiKeyLimits, this.time, source));
  }

  /** SPEC §2.5, always last. Fails open; a no-op without a cache. */
  async rpm(): Promise<void> {
    if (this.simple) return;
    const cache = this.core.cache;
    if (!cache) return this.#skip('rpm', 'no_cache');
    const { userId, groupId, userRpmLimit, groupRpmLimit } = this.subject;
    let groupCap = 0;
    if (groupId !== null) {
      const override = await this.#rpmOverride(groupId);
      // An override replaces the group cap; 0 exempts the user from it.
      groupCap = override === null ? groupRpmLimit : override;
    }
    if (groupCap === 0 && userRpmLimit === 0) return this.#skip('rpm', 'no_caps');

    let result;
    try {
      result = await cache.rpmHit({ userId, group: groupCap > 0 && groupId !== null ? { groupId, cap: groupCap } : undefined, userCap: userRpmLimit });
    } catch (err) {
      return this.#failOpen('rpm', err);
    }
    const windows = [];
    if (groupCap > 0) windows.push({ window: 'group', limit: String(groupCap), usage: String(result.groupCount), resetsAtMs: result.bucketEndsAtMs });
    if (userRpmLimit > 0) windows.push({ window: 'user', limit: String(userRpmLimit), usage: String(result.userCount), resetsAtMs: result.bucketEndsAtMs });
    if (result.outcome === 'allowed') return this.#record({ check: 'rpm', outcome: 'allowed', source: 'cache', windows });
    const code = result.outcome === 'group_exceeded' ? 'GROUP_RPM_EXCEEDED' : 'USER_RPM_EXCEEDED';
    this.#deny(new CheckDenial(
      { check: 'rpm', outcome: 'denied', code, source: 'cache', windows },
      new BillingError(code, { retryAfter: result.retryAfterSec, metadata: { windowResetsAt: new Date(result.bucketEndsAtMs).toISOString() } }),
    ));
  }

  /** The user's per-group override: from the subject, else the cache, else the store (cached, "none" included). */
  async #rpmOverride(groupId: string): Promise<RpmOverride> {
    const given = this.subject.groupRpmOverride;
    if (given !== undefined) return given;
    const { userId } = this.subject;
    const read = (await this.#readBatch())?.rpmOverride;
    if (read?.hit) return read.value.value;
    try {
      return await this.#load(`rpmOverride:${userId}:${groupId}`, async () => {
        const value = await this.core.store.getRpmOverride(userId, groupId);
        // Version 0: overrides are never put, only invalidated by setRpmOverride.
        if (read) this.core.cacheSync.fill({ kind: 'rpmOverride', userId, groupId }, { version: 0, value }, read.generation);
        return value;
      });
    } catch (err) {
      this.core.warnings.warn('rpm_override_lookup_failed', { err: errorText(err) }, 'RPM override lookup failed; treating as none');
      return null;
    }
  }

  /** One round trip for every entity this subject's checks may need, started by the first check that needs data. */
  #readBatch(): Promise<CacheBatchResult | null> {
    const cache = this.core.cache;
    if (!cache) return Promise.resolve(null);
    if (this.#batch) return this.#batch;
    const { userId, mode, groupId, apiKeyId, apiKeyLimits, platform, groupRpmOverride } = this.subject;
    this.#batch = cache.readBatch({
      userId,
      balance: mode === 'balance',
      subscriptionGroupId: mode === 'subscription' && groupId !== null ? groupId : undefined,
      apiKeyId: apiKeyLimits !== null && apiKeyId !== null ? apiKeyId : undefined,
      platform: mode === 'balance' && platform !== null ? platform : undefined,
      rpmOverrideGroupId: groupId !== null && groupRpmOverride === undefined ? groupId : undefined,
    }).catch((err: unknown) => {
      this.core.warnings.warn('cache_read_failed', { err: errorText(err) }, 'billing cache read failed; reading the store');
      return null;
    });
    return this.#batch;
  }

  #load<T>(key: string, load: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.core.loads.do(key, load, signal) as Promise<T>;
  }

  #resetKeyWindows(userId: string, apiKeyId: string): void {
    const { store, cacheSync } = this.core;
    const time = this.time;
    this.core.background.run(`resetKeyWindows:${userId}:${apiKeyId}`, async () => {
      await store.resetExpiredApiKeyWindows(userId, apiKeyId, time);
      await cacheSync.invalidate({ kind: 'apiKeyWindows', userId, apiKeyId });
    });
  }

  #infrastructureFailure(check: CheckName, err: unknown): never {
    this.core.breaker.recordFailure();
    this.core.warnings.warn(`${check}_store_failed`, { check, err: errorText(err) }, 'billing store read failed');
    this.#deny(new CheckDenial(
      { check, outcome: 'denied', code: 'BILLING_SERVICE_ERROR', source: 'store' },
      new BillingError('BILLING_SERVICE_ERROR', { cause: err }),
    ));
  }

  #failOpen(check: CheckName, err: unknown): void {
    this.core.warnings.warn(`${check}_failed_open`, { check, err: errorText(err) }, 'billing check failed open');
    this.#record({ check, outcome: 'failed_open', reason: 'error', source: 'none' });
  }

  #skip(check: CheckName, reason: string): void {
    this.#record({ check, outcome: 'skipped', reason });
  }

  #record(record: CheckRecord): void {
    this.decision.checks.push(record);
  }

  #apply(result: CheckRecord | CheckDenial): void {
    if (result instanceof CheckDenial) this.#deny(result);
    this.#record(result as CheckRecord);
  }

  #deny(denial: CheckDenial): never {
    this.#record(denial.record);
    this.decision.allowed = false;
    denials.add(denial.error);
    throw denial.error;
  }
}


// Settlement after the upstream call (docs/behaviour.md#settlement): validated up front, retried with backoff on store
// failures (idempotency makes that safe), cache updated from the committed values, drained by close().
import { errorText } from './background-tasks.js';
import type { CoreInternals } from './core-internals.js';
import { BillingError } from './errors.js';
import { MoneyError, formatUsd, parseCostUsd, type Usd } from './money.js';
import { releaseLease } from './store-holds.js';
import { normalizeSubject, type NormalizedSubject } from './subject.js';
import type { BillingSubject, CacheEntityRef, SettlementInput, SettlementResult } from './types.js';
import { BillingValidationError, describeInput, normalizeRequestId } from './validate.js';

const MAX_RETRY_DELAY_MS = 5000;
const MAX_MODEL_LENGTH = 128;

/** What the application passes to settle(). */
export interface SettleRequest {
  requestId: string;
  subject: BillingSubject;
  costUsd: Usd;
  model?: string | null;
  inputTokens?: number | null;
  outputTokens?: number | null;
}

export interface SettlementReceipt {
  requestId: string;
  /** True when this request id was already settled with the same content: nothing was charged again. */
  duplicate: boolean;
  costUsd: string;
  /** False in runMode 'simple' (usage logged, nothing charged). */
  charged: boolean;
}

function tokens(value: unknown, field: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw new BillingValidationError(field, `${field} must be a non-negative integer, got ${describeInput(value)}`);
}

function model(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' && value.length > 0 && value.length <= MAX_MODEL_LENGTH) return value;
  throw new BillingValidationError('model', `model must be a string of 1-${MAX_MODEL_LENGTH} characters`);
}

/** Store errors that retrying cannot fix: conflicts, missing rows, bad input. */
function isPermanent(err: unknown): boolean {
  if (err instanceof BillingValidationError || err instanceof MoneyError || err instanceof BillingError) return true;
  return typeof err === 'object' && err !== null && (err as { permanent?: unknown }).permanent === true;
}

export class Settler {
  readonly #pending = new Set<Promise<unknown>>();
  /** Retries waiting for their backoff to pass; drain() wakes them, so a shutdown never waits out a backoff. */
  readonly #sleepers = new Set<() => void>();
  #closingDeadlineMs: number | undefined;

  constructor(private readonly core: CoreInternals) {}

  /** Validates everything before touching the store; throws BillingValidationError / MoneyError naming the field. */
  prepare(request: SettleRequest, subject?: NormalizedSubject): SettlementInput {
    if (!request || typeof request !== 'object') throw new BillingValidationError('settle', 'settle() needs { requestId, subject, costUsd }');
    const normalized = subject ?? normalizeSubject(request.subject);
    return {
      requestId: normalizeRequestId(request.requestId),
      apiKeyId: normalized.apiKeyId ?? '',
      userId: normalized.userId,
      groupId: normalized.groupId,
      mode: normalized.mode,
      costUnits: parseCostUsd(request.costUsd),
      platform: normalized.platform,
      trackKeyWindows: normalized.apiKeyLimits !== null,
      charge: this.core.options.runMode !== 'simple',
      model: model(request.model),
      inputTokens: tokens(request.inputTokens, 'inputTokens'),
      outputTokens: tokens(request.outputTokens, 'outputTokens'),
      time: this.core.time(),
    };
  }

  /**
   * Settles exactly once: retries store failures with backoff until stored, or until close() gives up.
   * A reservation lease is released once the outcome is final (after the cache holds the new usage,
   * so the estimate and the cost are never both missing).
   */
  settle(input: SettlementInput, leaseId?: string): Promise<SettlementReceipt> {
    const run = this.#run(input);
    const tracked = leaseId === undefined ? run : run.finally(() => releaseLease(this.core, input.userId, leaseId));
    this.#pending.add(tracked);
    const forget = () => this.#pending.delete(tracked);
    tracked.then(forget, forget);
    return tracked;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Waits for pending settlements; after `timeoutMs` their retries stop (each failure is logged with
   * its content). A retry waiting for its backoff tries again at once, then backs off only as long as
   * the deadline allows.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#closingDeadlineMs = Date.now() + timeoutMs;
    for (const wake of this.#sleepers) wake();
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  async #run(input: SettlementInput): Promise<SettlementReceipt> {
    let delayMs = this.core.options.settlementRetryDelayMs;
    for (let attempt = 1; ; attempt++) {
      let result: SettlementResult;
      try {
        result = await this.core.groupCommit.settle(input);
      } catch (err) {
        if (isPermanent(err)) {
          const conflict = (err as { code?: unknown }).code === 'SETTLEMENT_CONFLICT';
          this.core.metrics.settlement(conflict ? 'conflict' : 'rejected');
          throw asBillingError(err, input);
        }
        if (this.#closingDeadlineMs !== undefined && Date.now() >= this.#closingDeadlineMs) {
          // Shutting down and out of time: the content is logged so it can be reconciled by hand.
          this.core.options.logger.error(
            { settlement: describe(input), attempts: attempt, err: errorText(err) },
            'billing settlement could not be stored before shutdown',
          );
          this.core.metrics.settlement('failed');
          throw new BillingError('BILLING_SERVICE_ERROR', { cause: err });
        }
        this.core.warnings.warn('settlement_retry', { attempt, err: errorText(err) }, 'billing settlement failed; retrying');
        this.core.metrics.settlementRetry();
        await this.#sleep(this.#closingDeadlineMs === undefined ? delayMs : Math.min(delayMs, this.#closingDeadlineMs - Date.now()));
        delayMs = Math.min(delayMs * 2, MAX_RETRY_DELAY_MS);
        continue;
      }
      this.core.metrics.settlement(result.duplicate ? 'duplicate' : 'stored');
      // A failed attempt may have committed with only its answer lost; this retry then finds a
      // duplicate and gets no rows back, so drop the entries that commit changed instead (docs/behaviour.md#settlement).
      if (result.duplicate && attempt > 1) await this.#invalidateCache(input);
      else await this.#updateCache(input, result);
      return { requestId: input.requestId, duplicate: result.duplicate, costUsd: formatUsd(input.costUnits), charged: input.charge !== false };
    }
  }

  /** Waits `ms`, or less when drain() starts. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, ms));
      this.#sleepers.add(wake);
    });
  }

  /** After the commit: put the values the transaction returned (never undoes or fails the settlement). */
  async #updateCache(input: SettlementInput, result: SettlementResult): Promise<void> {
    const { cacheSync } = this.core;
    const { userId, groupId, apiKeyId, platform } = input;
    const writes: Promise<void>[] = [];
    if (result.balance) writes.push(cacheSync.put({ kind: 'balance', userId }, result.balance));
    if (result.subscription && groupId !== null) writes.push(cacheSync.put({ kind: 'subscription', userId, groupId }, result.subscription));
    if (result.apiKeyWindows && apiKeyId !== '') writes.push(cacheSync.put({ kind: 'apiKeyWindows', userId, apiKeyId }, result.apiKeyWindows));
    if (result.platformQuota && platform !== null) writes.push(cacheSync.put({ kind: 'platformQuota', userId, platform }, result.platformQuota));
    await Promise.all(writes);
  }

  /** The entries a committed settlement of `input` wrote (docs/behaviour.md#settlement), invalidated; failures are repaired later by CacheSync. */
  async #invalidateCache(input: SettlementInput): Promise<void> {
    if (input.charge === false || input.costUnits === 0n) return;
    const { userId, groupId, apiKeyId, platform, mode } = input;
    const refs: CacheEntityRef[] = [];
    if (mode === 'balance') refs.push({ kind: 'balance', userId });
    else if (groupId !== null) refs.push({ kind: 'subscription', userId, groupId });
    if (input.trackKeyWindows && apiKeyId !== '') refs.push({ kind: 'apiKeyWindows', userId, apiKeyId });
    if (mode === 'balance' && platform !== null) refs.push({ kind: 'platformQuota', userId, platform });
    await Promise.all(refs.map((ref) => this.core.cacheSync.invalidate(ref)));
  }
}

/** A conflicting repeat becomes SETTLEMENT_CONFLICT (409); other permanent errors keep their clear message. */
function asBillingError(err: unknown, input: SettlementInput): unknown {
  if ((err as { code?: unknown }).code !== 'SETTLEMENT_CONFLICT') return err;
  return new BillingError('SETTLEMENT_CONFLICT', { cause: err, metadata: { requestId: input.requestId } });
}

/** Everything settle() would have stored, so that an operator can replay it by hand (docs/faults.md, "Shutdown"). */
function describe(input: SettlementInput): object {
  return {
    requestId: input.requestId,
    apiKeyId: input.apiKeyId,
    userId: input.userId,
    groupId: input.groupId,
    mode: input.mode,
    costUsd: formatUsd(input.costUnits),
    platform: input.platform,
    trackKeyWindows: input.trackKeyWindows,
    charge: input.charge !== false,
    model: input.model ?? null,
    inputTokens: input.inputTokens ?? null,
    outputTokens: input.outputTokens ?? null,
    settledAt: new Date(input.time.nowMs).toISOString(),
  };
}

// Keeps the holds of requests still in flight alive (docs/holds.md, "Renewal"): one timer per core
// renews every hold this process has open, in batches — one cache call per user, one store call for
// the store holds — so a long stream never loses its hold, while the holds of a process that dies
// stop counting within one TTL because nobody renews them.
import { errorText } from './background-tasks.js';
import type { ThrottledLog } from './log.js';
import { isStoreHold } from './store-holds.js';
import type { BillingStore, Clock, ReservationCache } from './types.js';
import { MAX_RENEWAL_LEASES } from './cache/leases.js';

export interface LeaseRenewerDeps {
  cache: ReservationCache | undefined;
  store: BillingStore;
  ttlMs: number;
  clock: Clock;
  warnings: ThrottledLog;
}

/** Renewals per TTL: a lease survives two missed renewals (a busy event loop, a slow Redis reply). */
const RENEWALS_PER_TTL = 3;

export class LeaseRenewer {
  /** userId → lease ids this process holds open for requests still running. */
  readonly #open = new Map<string, Set<string>>();
  readonly #deps: LeaseRenewerDeps;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(deps: LeaseRenewerDeps) {
    this.#deps = deps;
  }

  /** Milliseconds between renewals. */
  get intervalMs(): number {
    return Math.max(1, Math.floor(this.#deps.ttlMs / RENEWALS_PER_TTL));
  }

  /** Open holds this process renews. */
  get size(): number {
    let n = 0;
    for (const ids of this.#open.values()) n += ids.size;
    return n;
  }

  track(userId: string, leaseId: string): void {
    if (this.#closed) return;
    let ids = this.#open.get(userId);
    if (!ids) this.#open.set(userId, (ids = new Set()));
    ids.add(leaseId);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => void this.renewNow(), this.intervalMs);
      this.#timer.unref();
    }
  }

  /** Stops renewing the lease; whether it was tracked. */
  untrack(userId: string, leaseId: string): boolean {
    const ids = this.#open.get(userId);
    if (!ids?.delete(leaseId)) return false;
    if (ids.size === 0) this.#open.delete(userId);
    if (this.#open.size === 0) this.#stopTimer();
    return true;
  }

  /** Renews every tracked hold once (a renewal still running is joined, not doubled). */
  renewNow(): Promise<void> {
    this.#running ??= this.#renewAll().finally(() => (this.#running = undefined));
    return this.#running;
  }

  close(): void {
    this.#closed = true;
    this.#stopTimer();
    this.#open.clear();
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #renewAll(): Promise<void> {
    const { cache, store, ttlMs, clock } = this.#deps;
    /** Store hold id → its user. */
    const storeHolds = new Map<string, string>();
    const calls: Promise<void>[] = [];
    for (const [userId, ids] of this.#open) {
      const cached: string[] = [];
      for (const id of ids) {
        if (isStoreHold(id)) storeHolds.set(id, userId);
        else cached.push(id);
      }
      for (let i = 0; i < cached.length && cache; i += MAX_RENEWAL_LEASES) {
        const chunk = cached.slice(i, i + MAX_RENEWAL_LEASES);
        calls.push(
          cache.renew(userId, chunk, ttlMs).then(
            (lost) => this.#lost(userId, lost),
            (err: unknown) => this.#failed(err),
          ),
        );
      }
    }
    const held = [...storeHolds.keys()];
    for (let i = 0; i < held.length && typeof store.renewStoreHolds === 'function'; i += MAX_RENEWAL_LEASES) {
      calls.push(
        store.renewStoreHolds(held.slice(i, i + MAX_RENEWAL_LEASES), clock.now() + ttlMs).then(
          (lost) => {
            for (const id of lost) this.#lost(storeHolds.get(id)!, [id]);
          },
          (err: unknown) => this.#failed(err),
        ),
      );
    }
    await Promise.all(calls);
  }

  /** A hold that expired or was taken back before its renewal: its request runs on without it. */
  #lost(userId: string, leaseIds: readonly string[]): void {
    // One released while its renewal was on the way is not lost, only done.
    const lost = leaseIds.filter((id) => this.untrack(userId, id)).length;
    if (lost === 0) return;
    this.#deps.warnings.warn('lease_lost', { count: lost }, 'billing reservation expired before it could be renewed; its request runs on unheld');
  }

  /** The next renewal tries again; a hold lasts RENEWALS_PER_TTL intervals. */
  #failed(err: unknown): void {
    this.#deps.warnings.warn('lease_renewal_failed', { err: errorText(err) }, 'billing reservation renewal failed');
  }
}

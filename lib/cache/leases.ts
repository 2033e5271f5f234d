// Reservation leases, shared by both caches: how a lease is stored, which entity fields a dimension
// reads, and the admission rule the Redis script applies atomically (mirrored here for the memory cache).
import type { CacheEntityMap, LeaseInfo, ReservationDimension, ReservationWindow, ReserveRequest, ReserveResult } from '../types.js';
import { BillingValidationError } from '../validate.js';

/**
 * Where a window dimension's usage and start live: the stored hash fields the Redis script reads
 * (see entity-codec.ts) and the decoded entity's properties the memory cache reads.
 */
export const WINDOW_FIELDS: Readonly<Record<ReservationWindow, { usage: string; start: string; usageProp: string; startProp: string }>> = Object.freeze({
  daily: { usage: 'du', start: 'ds', usageProp: 'dailyUsage', startProp: 'dailyStartMs' },
  weekly: { usage: 'wu', start: 'ws', usageProp: 'weeklyUsage', startProp: 'weeklyStartMs' },
  monthly: { usage: 'mu', start: 'ms', usageProp: 'monthlyUsage', startProp: 'monthlyStartMs' },
  '5h': { usage: 'u5', start: 's5', usageProp: 'usage5h', startProp: 'start5hMs' },
  '1d': { usage: 'u1', start: 's1', usageProp: 'usage1d', startProp: 'start1dMs' },
  '7d': { usage: 'u7', start: 's7', usageProp: 'usage7d', startProp: 'start7dMs' },
});

/** The balance field of a balance entity. */
export const BALANCE_FIELD = 'b';

const LEASE_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const DIMENSION_NAME = /^[A-Za-z0-9_.@:-]{1,200}$/;
const LEASE_VALUE = /^(\d{1,16})\|(\d{1,16})\|([^|]*)$/;

export function assertLeaseId(leaseId: unknown, field = 'leaseId'): asserts leaseId is string {
  if (typeof leaseId !== 'string' || !LEASE_ID.test(leaseId)) throw new BillingValidationError(field, `${field} must be 1-128 characters of [A-Za-z0-9_.:-]`);
}

/** Validates a reserve request before it reaches a cache (names end up inside stored values). */
export function assertReserveRequest(request: ReserveRequest): void {
  assertLeaseId(request.leaseId);
  if (request.amount <= 0n) throw new BillingValidationError('amount', 'a reservation amount must be positive');
  if (!Number.isSafeInteger(request.ttlMs) || request.ttlMs <= 0) throw new BillingValidationError('ttlMs', 'ttlMs must be a positive integer');
  for (const dimension of request.dimensions) {
    if (!DIMENSION_NAME.test(dimension.name)) throw new BillingValidationError('dimension', `bad reservation dimension name ${JSON.stringify(dimension.name)}`);
  }
}

/** `<expiresAtMs>|<amount>|<dim>,<dim>`: what the lease hash holds per lease id. */
export function encodeLease(expiresAtMs: number, amount: bigint, dimensions: readonly string[]): string {
  return `${expiresAtMs}|${amount}|${dimensions.join(',')}`;
}

/** The stored value as a lease; null when unreadable (treated as gone). */
export function decodeLease(leaseId: string, value: string): LeaseInfo | null {
  const match = LEASE_VALUE.exec(value);
  if (!match) return null;
  return { leaseId, expiresAtMs: Number(match[1]), amount: BigInt(match[2]!), dimensions: match[3] ? match[3].split(',') : [] };
}

type LiveEntity = CacheEntityMap['balance'] | CacheEntityMap['subscription'] | CacheEntityMap['platformQuota'] | CacheEntityMap['apiKeyWindows'];

/**
 * The admission rule (the memory twin of RESERVE_LUA): for every dimension,
 * used + open leases + amount ≤ capacity, reading the live entity when there is one.
 */
export function admit(
  request: ReserveRequest,
  openByDimension: ReadonlyMap<string, bigint>,
  liveEntity: (dimension: ReservationDimension) => LiveEntity | null,
): ReserveResult | null {
  for (const dimension of request.dimensions) {
    const live = liveEntity(dimension) as Record<string, unknown> | null;
    let capacity: bigint;
    let used: bigint;
    // Store holds (docs/holds.md) take from the balance, and count in every window of their row.
    const held = live ? ((live.held as bigint | undefined) ?? 0n) : 0n;
    if (dimension.kind === 'balance') {
      capacity = live ? (live.balance as bigint) - held : dimension.fallbackCapacity;
      used = 0n;
    } else {
      capacity = dimension.limit;
      if (live) {
        const { usageProp, startProp } = WINDOW_FIELDS[dimension.window];
        const start = live[startProp] as number | null;
        used = (start === null || start < dimension.expiryThreshold ? 0n : (live[usageProp] as bigint)) + held;
      } else {
        used = dimension.fallbackUsed;
      }
    }
    const open = openByDimension.get(dimension.name) ?? 0n;
    if (used + open + request.amount > capacity) {
      return { outcome: 'denied', dimension: dimension.name, availableUnits: capacity - used - open };
    }
  }
  return null;
}

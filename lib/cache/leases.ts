// Reservation leases, shared by both caches: how a lease is stored, which entity fields a dimension
// reads, and the admission rule the Redis script applies atomically (mirrored here for the memory cache).
import type { CacheEntityMap, LeaseInfo, ReservationDimension, ReservationWindow, ReserveRequest, ReserveResult } from '../types.js';
import { MAX_USD_UNITS } from '../money.js';
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
/** `<expiresAtMs>|<amount>|<dim>,<dim>|<slot>,<slot>` (leases from before slots existed have no last part). */
const LEASE_VALUE = /^(\d{1,16})\|(\d{1,16})\|([^|]*)(?:\|([^|]*))?$/;
/** Most slots one request may take at once (one per user, one per key in practice). */
const MAX_SLOTS = 8;

export function assertLeaseId(leaseId: unknown, field = 'leaseId'): asserts leaseId is string {
  if (typeof leaseId !== 'string' || !LEASE_ID.test(leaseId)) throw new BillingValidationError(field, `${field} must be 1-128 characters of [A-Za-z0-9_.:-]`);
}

function assertDimensionName(name: string): void {
  if (!DIMENSION_NAME.test(name)) throw new BillingValidationError('dimension', `bad reservation dimension name ${JSON.stringify(name)}`);
}

/** Validates a reserve request before it reaches a cache (names end up inside stored values). */
export function assertReserveRequest(request: ReserveRequest): void {
  assertLeaseId(request.leaseId);
  const slots = request.slots ?? [];
  if (request.amount < 0n || (request.amount === 0n && request.dimensions.length > 0)) {
    throw new BillingValidationError('amount', 'a reservation amount must be positive');
  }
  // Lease values keep at most 16 digits, and the scripts count in doubles: exact up to 2^53 − 1.
  if (request.amount > MAX_USD_UNITS) throw new BillingValidationError('amount', `a reservation amount must be at most ${MAX_USD_UNITS} units`);
  if (request.dimensions.length === 0 && slots.length === 0)
    throw new BillingValidationError('dimensions', 'a reservation needs at least one dimension or slot');
  if (!Number.isSafeInteger(request.ttlMs) || request.ttlMs <= 0) throw new BillingValidationError('ttlMs', 'ttlMs must be a positive integer');
  for (const dimension of request.dimensions) assertDimensionName(dimension.name);
  if (slots.length > MAX_SLOTS) throw new BillingValidationError('slots', `at most ${MAX_SLOTS} slots per reservation`);
  for (const slot of slots) {
    assertDimensionName(slot.name);
    if (!Number.isSafeInteger(slot.limit) || slot.limit < 1)
      throw new BillingValidationError('slots', `slot limit must be a positive integer, got ${String(slot.limit)}`);
  }
  const names = [...request.dimensions.map((d) => d.name), ...slots.map((s) => s.name)];
  if (new Set(names).size !== names.length) throw new BillingValidationError('dimensions', 'reservation dimension and slot names must be distinct');
}

/** Most leases one renewal may name (the renewer sends larger sets in several). */
export const MAX_RENEWAL_LEASES = 1000;

export function assertRenewal(leaseIds: readonly string[], ttlMs: number): void {
  if (!Array.isArray(leaseIds) || leaseIds.length > MAX_RENEWAL_LEASES)
    throw new BillingValidationError('leaseIds', `a renewal names at most ${MAX_RENEWAL_LEASES} leases`);
  for (const leaseId of leaseIds) assertLeaseId(leaseId);
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new BillingValidationError('ttlMs', 'ttlMs must be a positive integer');
}

/** A value of the lease hash (written by RESERVE_LUA) as a lease; null when unreadable (treated as gone). */
export function decodeLease(leaseId: string, value: string): LeaseInfo | null {
  const match = LEASE_VALUE.exec(value);
  if (!match) return null;
  const list = (text: string | undefined) => (text ? text.split(',') : []);
  return { leaseId, expiresAtMs: Number(match[1]), amount: BigInt(match[2]!), dimensions: list(match[3]), slots: list(match[4]) };
}

type LiveEntity = CacheEntityMap['balance'] | CacheEntityMap['subscription'] | CacheEntityMap['platformQuota'] | CacheEntityMap['apiKeyWindows'];

/**
 * The admission rule (the memory twin of RESERVE_LUA): for every slot, leases holding it + 1 ≤
 * limit; for every dimension, used + held by open leases + amount ≤ capacity, reading the live
 * entity when there is one. `held(name)` is the running total of the open leases
 * (other than this one) on a dimension or slot. Unenforced names never refuse; the first that would
 * is returned as `over`.
 */
export function admit(
  request: ReserveRequest,
  held: (name: string) => bigint,
  liveEntity: (dimension: ReservationDimension) => LiveEntity | null,
): { denial: ReserveResult | null; over: string | undefined } {
  let over: string | undefined;
  const refuse = (name: string, availableUnits: bigint): ReserveResult | null => {
    if (!request.unenforced?.has(name)) return { outcome: 'denied', dimension: name, availableUnits };
    over ??= name;
    return null;
  };
  // Slots first, as RESERVE_LUA checks them; a hold that grows keeps the slots it has.
  for (const slot of request.replaceOnly ? [] : (request.slots ?? [])) {
    const inUse = held(slot.name);
    if (inUse + 1n > BigInt(slot.limit)) {
      const denial = refuse(slot.name, BigInt(slot.limit) - inUse);
      if (denial) return { denial, over };
    }
  }
  for (const dimension of request.dimensions) {
    const live = liveEntity(dimension) as Record<string, unknown> | null;
    // The fallbacks date from the admission; a hold that grows later must see the live row.
    if (request.replaceOnly && !live && !request.unenforced?.has(dimension.name)) return { denial: { outcome: 'stale', dimension: dimension.name }, over };
    let capacity: bigint;
    let used: bigint;
    // Store holds (docs/holds.md) take from the balance, and count in every window of their row.
    const storeHeld = live ? ((live.held as bigint | undefined) ?? 0n) : 0n;
    if (dimension.kind === 'balance') {
      capacity = live ? (live.balance as bigint) - storeHeld : dimension.fallbackCapacity;
      used = 0n;
    } else {
      capacity = dimension.limit;
      if (live) {
        const { usageProp, startProp } = WINDOW_FIELDS[dimension.window];
        const start = live[startProp] as number | null;
        used = (start === null || start < dimension.expiryThreshold ? 0n : (live[usageProp] as bigint)) + storeHeld;
      } else {
        used = dimension.fallbackUsed;
      }
    }
    const open = held(dimension.name);
    if (used + open + request.amount > capacity) {
      const denial = refuse(dimension.name, capacity - used - open);
      if (denial) return { denial, over };
    }
  }
  return { denial: null, over };
}

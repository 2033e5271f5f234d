// One user's open leases in process memory, in constant time per operation (docs/holds.md, "Constant
// time"): the amount held per dimension and slot as running totals, and an expiry index from which
// only expired leases are taken. The memory twin of the Redis lease hash, totals hash and expiry zset.
import type { LeaseInfo } from '../types.js';

interface BookedLease {
  expiresAtMs: number;
  amount: bigint;
  dimensions: readonly string[];
  slots: readonly string[];
}

export class LeaseBook {
  readonly #leases = new Map<string, BookedLease>();
  /** Units per dimension, leases per slot, over every booked lease (expired ones until swept). */
  readonly #totals = new Map<string, bigint>();
  /**
   * Min-heap of (expiry, lease id). A renewal pushes a new entry instead of moving the old one; an
   * entry whose expiry no longer matches its lease is stale and skipped when it surfaces.
   */
  readonly #expiry: { atMs: number; leaseId: string }[] = [];

  get size(): number {
    return this.#leases.size;
  }

  /** What the open leases hold on a dimension or slot, once those expired by `nowMs` are taken out. */
  held(name: string): bigint {
    return this.#totals.get(name) ?? 0n;
  }

  /** Takes out every lease expired at `nowMs`, each exactly once. */
  sweep(nowMs: number): void {
    const heap = this.#expiry;
    while (heap.length > 0 && heap[0]!.atMs <= nowMs) {
      const { atMs, leaseId } = this.#pop();
      const lease = this.#leases.get(leaseId);
      if (lease !== undefined && lease.expiresAtMs === atMs) this.#unbook(leaseId, lease);
    }
  }

  /** The lease if it is booked (expired or not; callers sweep first). */
  get(leaseId: string): Readonly<BookedLease> | undefined {
    return this.#leases.get(leaseId);
  }

  book(leaseId: string, lease: BookedLease): void {
    const previous = this.#leases.get(leaseId);
    if (previous) this.#unbook(leaseId, previous);
    this.#leases.set(leaseId, lease);
    if (lease.amount > 0n) for (const name of lease.dimensions) this.#add(name, lease.amount);
    for (const name of lease.slots) this.#add(name, 1n);
    this.#push({ atMs: lease.expiresAtMs, leaseId });
  }

  /** Removes the lease; whether it was still open at `nowMs`. */
  remove(leaseId: string, nowMs: number): boolean {
    const lease = this.#leases.get(leaseId);
    if (!lease) return false;
    this.#unbook(leaseId, lease);
    return lease.expiresAtMs > nowMs;
  }

  /** Extends an open lease to `expiresAtMs` (never shortens it); false when it is not open. */
  renew(leaseId: string, expiresAtMs: number, nowMs: number): boolean {
    const lease = this.#leases.get(leaseId);
    if (!lease || lease.expiresAtMs <= nowMs) return false;
    if (expiresAtMs > lease.expiresAtMs) {
      lease.expiresAtMs = expiresAtMs;
      this.#push({ atMs: expiresAtMs, leaseId });
    }
    return true;
  }

  list(nowMs: number): LeaseInfo[] {
    return [...this.#leases]
      .filter(([, lease]) => lease.expiresAtMs > nowMs)
      .map(([leaseId, lease]) => ({
        leaseId,
        expiresAtMs: lease.expiresAtMs,
        amount: lease.amount,
        dimensions: [...lease.dimensions],
        slots: [...lease.slots],
      }));
  }

  #unbook(leaseId: string, lease: BookedLease): void {
    this.#leases.delete(leaseId);
    if (lease.amount > 0n) for (const name of lease.dimensions) this.#add(name, -lease.amount);
    for (const name of lease.slots) this.#add(name, -1n);
  }

  #add(name: string, delta: bigint): void {
    const total = (this.#totals.get(name) ?? 0n) + delta;
    if (total === 0n) this.#totals.delete(name);
    else this.#totals.set(name, total);
  }

  #push(entry: { atMs: number; leaseId: string }): void {
    const heap = this.#expiry;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.atMs <= entry.atMs) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = entry;
  }

  #pop(): { atMs: number; leaseId: string } {
    const heap = this.#expiry;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= heap.length) break;
        const right = left + 1;
        const child = right < heap.length && heap[right]!.atMs < heap[left]!.atMs ? right : left;
        if (heap[child]!.atMs >= last.atMs) break;
        heap[i] = heap[child]!;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}

// BillingCache in process memory: the Redis scripts' branches in TypeScript over the same hash-of-strings
// entries and codec, with TTLs and RPM buckets on an injectable clock, bounded by LRU eviction.
import { systemClock } from '../clock.js';
import type {
  BillingCache,
  CacheBatchRequest,
  CacheBatchResult,
  CacheEntityKind,
  CacheEntityMap,
  CacheEntityRef,
  CacheRead,
  Clock,
  LeaseInfo,
  ReserveRequest,
  ReserveResult,
  RpmRequest,
  RpmResult,
} from '../types.js';
import { batchRefs, toCacheRead } from './batch.js';
import { checkField, encodeEntity, inspectEntry, META_FIELDS, META_RULE, type RawHash } from './entity-codec.js';
import { assertKeyPrefix, CacheKeys, DEFAULT_KEY_PREFIX } from './keys.js';
import { LeaseBook } from './lease-book.js';
import { admit, assertRenewal, assertReserveRequest } from './leases.js';
import { assertRpmRequest, rpmBucket, rpmResult } from './rpm.js';
import { CACHE_TTL_MS, entityTtlMs, RPM_COUNTER_TTL_SEC } from './ttl.js';

export interface MemoryBillingCacheOptions {
  /** Most entries kept (entities, tombstones and RPM counters); the least recently used go first. Default 100 000. */
  maxEntries?: number;
  /** Time source for TTLs and RPM buckets. Default: the system clock. */
  clock?: Clock;
  /** Source of the TTL jitter, [0, 1) like Math.random (the default). */
  random?: () => number;
  /** Key prefix, validated like the Redis cache's (entries are keyed the same way). Default 'kbe:'. */
  prefix?: string;
  /** How often expired entries are swept in the background, ms. Default 60 000. */
  sweepIntervalMs?: number;
}

interface Entry {
  hash: RawHash;
  expiresAtMs: number;
  /** Value of the access counter when the entry last moved to the most-recent end. */
  touchedAt: number;
  /** The hash decoded as a read result, kept until the entry is replaced (hashes are never edited in place). */
  decoded: CacheRead<unknown> | undefined;
  /**
   * An RPM counter's count for one bucket field, parsed from the hash once: while present it holds
   * the count, not `hash[field]` (raw reads render it), so a hit is an increment instead of a
   * parse, a new hash and a new string. A hash keyed by a bucket number is an object with one
   * sparse element, which V8 stores as a slow dictionary.
   */
  counter: { readonly field: string; count: number } | undefined;
}

/** Test access to stored entries, exactly as Redis tests use HGETALL/HSET/PTTL. Not part of the public API. */
export interface MemoryRawAccess {
  /** The stored hash (a copy), or null when absent or expired. */
  read(key: string): RawHash | null;
  /** Replaces the entry with `hash`, living `ttlMs` (default one hour). */
  write(key: string, hash: RawHash, ttlMs?: number): void;
  /** Remaining life in ms, or -2 when absent (PTTL's convention). */
  ttlMs(key: string): number;
  readonly size: number;
}

/** The symbol under which MemoryBillingCache exposes MemoryRawAccess; the package barrel does not export it. */
export const memoryRawAccess: unique symbol = Symbol('MemoryBillingCache raw access');

const DEFAULT_MAX_ENTRIES = 100_000;
const ABSENT: CacheRead<unknown> = Object.freeze({ hit: false, generation: 0 });
const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
const RAW_DEFAULT_TTL_MS = 3_600_000;

function positiveInteger(value: unknown, option: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw new TypeError(`${option} must be a positive integer, got ${String(value)}`);
}

/** A count HINCRBY can increment past 1, as Redis parses it (no sign, no leading zero). */
const RPM_COUNT = /^[1-9][0-9]{0,15}$/;

/** A stored RPM count as a number, or 0 when absent or unreadable (the hit then restarts the bucket, as RPM_HIT_LUA does). */
function rpmCount(text: string | undefined): number {
  return text !== undefined && RPM_COUNT.test(text) ? Number(text) : 0;
}

/** Reads a meta field like the Lua `meta` helper: the integer, or null when absent or unreadable. */
function meta(text: string | undefined): number | null {
  return checkField(META_RULE, text) ? Number(text) : null;
}

export class MemoryBillingCache implements BillingCache {
  // A Map iterates in insertion order; re-inserting on every access keeps the least recently used first.
  readonly #entries = new Map<string, Entry>();
  /** Open leases per user, outside the LRU: a lease is bounded by its TTL, and evicting one would free money still held. */
  readonly #leaseBooks = new Map<string, LeaseBook>();
  readonly #maxEntries: number;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #keys: CacheKeys;
  /** Counts reads and writes, the clock of the approximate LRU. */
  #accesses = 0;
  #sweepTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: MemoryBillingCacheOptions = {}) {
    this.#maxEntries = positiveInteger(options.maxEntries ?? DEFAULT_MAX_ENTRIES, 'maxEntries');
    const clock = options.clock ?? systemClock;
    if (clock === null || typeof clock !== 'object' || typeof clock.now !== 'function') {
      throw new TypeError('clock must be an object with a now() method returning epoch milliseconds');
    }
    this.#clock = clock;
    if (options.random !== undefined && typeof options.random !== 'function') {
      throw new TypeError(`random must be a function returning [0, 1), got ${typeof options.random}`);
    }
    this.#random = options.random ?? Math.random;
    this.#keys = new CacheKeys(assertKeyPrefix(options.prefix ?? DEFAULT_KEY_PREFIX, 'prefix'));
    const sweepIntervalMs = positiveInteger(options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS, 'sweepIntervalMs');
    // Lazy expiry on access keeps reads exact; the sweep only frees memory of keys nobody asks for.
    this.#sweepTimer = setInterval(() => this.#sweep(), sweepIntervalMs);
    this.#sweepTimer.unref();
  }

  get keys(): CacheKeys {
    return this.#keys;
  }

  /** Number of stored entries, expired ones not yet swept included. */
  get size(): number {
    return this.#entries.size;
  }

  async readBatch(request: CacheBatchRequest): Promise<CacheBatchResult> {
    this.#assertOpen();
    const result: Record<string, CacheRead<unknown>> = {};
    const nowMs = Math.floor(this.#clock.now());
    for (const [slot, ref] of batchRefs(request)) {
      const entry = this.#get(this.#keys.entity(ref), nowMs);
      // Decoding and validating every field is most of a read; an entry is decoded once per write.
      result[slot] = entry === undefined ? ABSENT : (entry.decoded ??= toCacheRead(ref.kind, entry.hash));
    }
    return result as CacheBatchResult;
  }

  // Mirrors FILL_LUA: same generation, and no intact live value at this or a newer version.
  async fill<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K], generation: number): Promise<boolean> {
    this.#assertOpen();
    if (!Number.isSafeInteger(generation) || generation < 0) {
      throw new TypeError(`generation must be a non-negative integer, got ${String(generation)}`);
    }
    const fields = encodeEntity(ref.kind, value);
    const key = this.#keys.entity(ref);
    const state = inspectEntry(ref.kind, this.#get(key)?.hash ?? null);
    if (state.generation !== generation) return false;
    if (state.live !== null && state.live.version >= value.version) return false;
    this.#store(key, state.generation, value.version, fields, entityTtlMs(ref.kind, value, this.#random));
    return true;
  }

  // Mirrors PUT_LUA: newer than the stored version, live or tombstone.
  async put<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K]): Promise<boolean> {
    this.#assertOpen();
    const fields = encodeEntity(ref.kind, value);
    const key = this.#keys.entity(ref);
    const state = inspectEntry(ref.kind, this.#get(key)?.hash ?? null);
    if (state.version !== null && value.version <= state.version) return false;
    this.#store(key, state.generation, value.version, fields, entityTtlMs(ref.kind, value, this.#random));
    return true;
  }

  // Mirrors INVALIDATE_LUA: bump the generation, keep the last readable version, drop the data.
  async invalidate(ref: CacheEntityRef): Promise<void> {
    this.#assertOpen();
    const key = this.#keys.entity(ref);
    const hash = this.#get(key)?.hash;
    const generation = meta(hash?.[META_FIELDS.generation]) ?? 0;
    const version = meta(hash?.[META_FIELDS.version]);
    const tombstone: RawHash = { [META_FIELDS.generation]: String(generation + 1), [META_FIELDS.tombstone]: '1' };
    if (version !== null) tombstone[META_FIELDS.version] = String(version);
    this.#set(key, tombstone, CACHE_TTL_MS.tombstone);
  }

  // Mirrors RPM_HIT_LUA, with the bucket taken from this cache's clock.
  async rpmHit(request: RpmRequest): Promise<RpmResult> {
    this.#assertOpen();
    assertRpmRequest(request);
    return this.#rpmHitNow(request);
  }

  /** RPM_HIT_LUA's branches, synchronously (so a reservation can count RPM in the same step). */
  #rpmHitNow(request: RpmRequest): RpmResult {
    const nowMs = Math.floor(this.#clock.now());
    const { bucket, endsAtMs } = rpmBucket(nowMs);
    const field = String(bucket);
    const hit = (key: string): number => {
      const entry = this.#get(key, nowMs);
      if (entry !== undefined) {
        // Same bucket: the expiry set when the bucket began stays, as HINCRBY leaves it in Redis.
        const counter = entry.counter ?? (entry.counter = { field, count: rpmCount(entry.hash[field]) });
        if (counter.field === field && counter.count >= 1 && counter.count < Number.MAX_SAFE_INTEGER) return ++counter.count;
      }
      this.#set(key, { [field]: '1' }, RPM_COUNTER_TTL_SEC * 1000).counter = { field, count: 1 };
      return 1;
    };
    let groupCount = 0;
    if (request.group) {
      groupCount = hit(this.#keys.rpmGroup(request.userId, request.group.groupId));
      if (groupCount > request.group.cap) return rpmResult(1, groupCount, 0, endsAtMs, nowMs);
    }
    let userCount = 0;
    if (request.userCap > 0) {
      userCount = hit(this.#keys.rpmUser(request.userId));
      if (userCount > request.userCap) return rpmResult(2, groupCount, userCount, endsAtMs, nowMs);
    }
    return rpmResult(0, groupCount, userCount, endsAtMs, nowMs);
  }

  // Mirrors RESERVE_LUA: expired leases taken out first, every dimension and slot checked against
  // the running totals, all or nothing.
  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    this.#assertOpen();
    assertReserveRequest(request);
    if (request.rpm) assertRpmRequest(request.rpm);
    const nowMs = Math.floor(this.#clock.now());
    const book = this.#leaseBook(request.userId, nowMs);
    const previous = book.get(request.leaseId);
    if (request.replaceOnly && !previous) {
      this.#dropIfEmpty(request.userId, book);
      return { outcome: 'gone' };
    }
    // A re-reserve of the same id replaces it: its own amount does not count against it.
    const own = (name: string): bigint => {
      if (!previous) return 0n;
      if (previous.slots.includes(name)) return 1n;
      return previous.dimensions.includes(name) ? previous.amount : 0n;
    };
    const { denial, over } = admit(
      request,
      (name) => book.held(name) - own(name),
      (dimension) => inspectEntry(dimension.entity.kind, this.#get(this.#keys.entity(dimension.entity))?.hash ?? null).live,
    );
    if (denial) {
      this.#dropIfEmpty(request.userId, book);
      return denial;
    }
    // RPM last: counted only once the holds fit, and a request it refuses holds nothing.
    const rpm = request.rpm ? this.#rpmHitNow(request.rpm) : undefined;
    if (rpm && rpm.outcome !== 'allowed') {
      this.#dropIfEmpty(request.userId, book);
      return { outcome: 'rpm_exceeded', rpm };
    }
    const slots = request.slots ?? [];
    const expiresAtMs = nowMs + request.ttlMs;
    book.book(request.leaseId, {
      expiresAtMs,
      amount: request.amount,
      dimensions: request.dimensions.map((d) => d.name),
      slots: slots.map((slot) => slot.name),
    });
    return { outcome: 'reserved', expiresAtMs, slotsInUse: slots.map((slot) => Number(book.held(slot.name))), over, rpm };
  }

  async release(userId: string, leaseId: string): Promise<boolean> {
    this.#assertOpen();
    const nowMs = Math.floor(this.#clock.now());
    const book = this.#existingBook(userId, nowMs);
    if (!book) return false;
    const open = book.remove(leaseId, nowMs);
    this.#dropIfEmpty(userId, book);
    return open;
  }

  async renew(userId: string, leaseIds: readonly string[], ttlMs: number): Promise<string[]> {
    this.#assertOpen();
    assertRenewal(leaseIds, ttlMs);
    const nowMs = Math.floor(this.#clock.now());
    const book = this.#existingBook(userId, nowMs);
    if (!book) return [...leaseIds];
    const lost = leaseIds.filter((leaseId) => !book.renew(leaseId, nowMs + ttlMs, nowMs));
    this.#dropIfEmpty(userId, book);
    return lost;
  }

  async listLeases(userId: string): Promise<LeaseInfo[]> {
    this.#assertOpen();
    const nowMs = Math.floor(this.#clock.now());
    return this.#leaseBooks.get(this.#keys.leases(userId))?.list(nowMs) ?? [];
  }

  /** The user's lease book, swept of leases expired by `nowMs`; undefined when the user has none. */
  #existingBook(userId: string, nowMs: number): LeaseBook | undefined {
    const book = this.#leaseBooks.get(this.#keys.leases(userId));
    book?.sweep(nowMs);
    return book;
  }

  /** The user's lease book, swept of leases expired by `nowMs` (created empty when absent). */
  #leaseBook(userId: string, nowMs: number): LeaseBook {
    const existing = this.#existingBook(userId, nowMs);
    if (existing) return existing;
    const book = new LeaseBook();
    this.#leaseBooks.set(this.#keys.leases(userId), book);
    return book;
  }

  #dropIfEmpty(userId: string, book: LeaseBook): void {
    if (book.size === 0) this.#leaseBooks.delete(this.#keys.leases(userId));
  }

  async ping(): Promise<void> {
    this.#assertOpen();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
    this.#entries.clear();
    this.#leaseBooks.clear();
  }

  /** @internal Direct access to stored entries, for the package's own tests. */
  [memoryRawAccess](): MemoryRawAccess {
    const self = this;
    return {
      read: (key) => {
        const entry = self.#get(key);
        if (entry === undefined) return null;
        const { counter } = entry;
        return counter === undefined ? { ...entry.hash } : { ...entry.hash, [counter.field]: String(counter.count) };
      },
      write: (key, hash, ttlMs = RAW_DEFAULT_TTL_MS) => self.#set(key, { ...hash }, ttlMs),
      ttlMs: (key) => {
        const entry = self.#get(key);
        return entry === undefined ? -2 : entry.expiresAtMs - Math.floor(self.#clock.now());
      },
      get size() {
        return self.#entries.size;
      },
    };
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('MemoryBillingCache is closed');
  }

  /**
   * The live entry; expired entries are dropped here (Redis: now > expiry). Recency is kept
   * approximately: an entry moves to the most-recent end only when it has not moved for half the
   * capacity's worth of accesses, which spares a Map delete + insert on most reads, yet an entry
   * read at least that often can never reach the eviction end.
   */
  #get(key: string, nowMs = Math.floor(this.#clock.now())): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (nowMs > entry.expiresAtMs) {
      this.#entries.delete(key);
      return undefined;
    }
    const now = ++this.#accesses;
    if (now - entry.touchedAt > this.#maxEntries / 2) {
      entry.touchedAt = now;
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    }
    return entry;
  }

  #set(key: string, hash: RawHash, ttlMs: number): Entry {
    // Every field present from the start: adding `decoded` or `counter` later would give entries
    // several shapes, and V8 throws away the optimised reads that assumed one (a deoptimisation).
    const entry: Entry = { hash, expiresAtMs: Math.floor(this.#clock.now()) + ttlMs, touchedAt: ++this.#accesses, decoded: undefined, counter: undefined };
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
    }
    return entry;
  }

  /** Rewrites the entry from scratch, like the Lua `store` helper. */
  #store(key: string, generation: number, version: number, fields: { field: string; value: string }[], ttlMs: number): void {
    const hash: RawHash = { [META_FIELDS.generation]: String(generation), [META_FIELDS.version]: String(version) };
    for (const { field, value } of fields) hash[field] = value;
    this.#set(key, hash, ttlMs);
  }

  #sweep(): void {
    const nowMs = Math.floor(this.#clock.now());
    for (const [key, entry] of this.#entries) {
      if (nowMs > entry.expiresAtMs) this.#entries.delete(key);
    }
    for (const [key, book] of this.#leaseBooks) {
      book.sweep(nowMs);
      if (book.size === 0) this.#leaseBooks.delete(key);
    }
  }
}

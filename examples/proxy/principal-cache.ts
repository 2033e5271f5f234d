// Who an API key belongs to, cached so that authentication does not need the database on every request
// (docs/faults.md, "Example gateway"): shared in Redis when the gateway has one, else in process memory.
// Entries live at most PRINCIPAL_TTL_MS; the admin routes that change a key or a user drop that user's
// entries on every process sharing the cache.
import type { Cluster, Redis } from 'ioredis';
import type { GatewayRepository, Principal } from './gateway-repo.js';

/** How long a cached principal may be used; also the longest a change can go unseen if an invalidation is lost. */
export const PRINCIPAL_TTL_MS = 60_000;

/**
 * A lookup that read the database before an admin write may fill the cache after the write dropped
 * its entries; the write drops them once more after this delay, longer than any lookup can take
 * (PostgreSQL: connection acquire 2 s + connect 1 s + query 2 s; SQLite: its 5 s busy timeout).
 */
const SECOND_INVALIDATION_MS = 10_000;

const MEMORY_MAX_ENTRIES = 100_000;

export interface PrincipalCacheBackend {
  /** The cached principal, undefined when absent or unreadable; throws when the backend fails. */
  get(keyHash: string): Promise<Principal | undefined>;
  set(keyHash: string, principal: Principal): Promise<void>;
  /** Drops every entry of the user's keys. */
  dropUser(userId: string): Promise<void>;
  close(): void;
}

/** A JSON entry as a Principal, or undefined when it is not one (a corrupt entry is a miss). */
export function parsePrincipal(text: string | null): Principal | undefined {
  if (text === null) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const { key, user, group } = (value ?? {}) as Partial<Record<keyof Principal, Record<string, unknown> | null>>;
  const isString = (v: unknown) => typeof v === 'string';
  const isLimit = (v: unknown) => v === null || isString(v);
  const keyOk =
    key &&
    isString(key.id) &&
    isString(key.label) &&
    isString(key.name) &&
    typeof key.enabled === 'boolean' &&
    isLimit(key.rateLimit5hUsd) &&
    isLimit(key.rateLimit1dUsd) &&
    isLimit(key.rateLimit7dUsd);
  const userOk =
    user &&
    isString(user.id) &&
    isString(user.name) &&
    isLimit(user.groupId) &&
    Number.isSafeInteger(user.rpmLimit) &&
    Number.isSafeInteger(user.maxConcurrency);
  const groupOk =
    group === null ||
    (group &&
      isString(group.id) &&
      isString(group.name) &&
      isString(group.rateMultiplier) &&
      (group.billingType === 'standard' || group.billingType === 'subscription') &&
      Number.isSafeInteger(group.rpmLimit) &&
      isLimit(group.dailyLimitUsd) &&
      isLimit(group.weeklyLimitUsd) &&
      isLimit(group.monthlyLimitUsd));
  if (!keyOk || !userOk || !groupOk || key.userId !== user.id) return undefined;
  return value as Principal;
}

/** One process's entries, bounded in number (the oldest go first). */
export class MemoryPrincipalCache implements PrincipalCacheBackend {
  readonly #entries = new Map<string, { principal: Principal; expiresAtMs: number }>();
  readonly #byUser = new Map<string, Set<string>>();

  constructor(private readonly now: () => number = Date.now) {}

  async get(keyHash: string): Promise<Principal | undefined> {
    const entry = this.#entries.get(keyHash);
    if (!entry) return undefined;
    if (entry.expiresAtMs > this.now()) return entry.principal;
    this.#delete(keyHash);
    return undefined;
  }

  async set(keyHash: string, principal: Principal): Promise<void> {
    this.#delete(keyHash);
    if (this.#entries.size >= MEMORY_MAX_ENTRIES) this.#delete(this.#entries.keys().next().value as string);
    this.#entries.set(keyHash, { principal, expiresAtMs: this.now() + PRINCIPAL_TTL_MS });
    const hashes = this.#byUser.get(principal.user.id) ?? new Set<string>();
    hashes.add(keyHash);
    this.#byUser.set(principal.user.id, hashes);
  }

  async dropUser(userId: string): Promise<void> {
    for (const keyHash of this.#byUser.get(userId) ?? []) this.#delete(keyHash);
  }

  close(): void {
    this.#entries.clear();
    this.#byUser.clear();
  }

  #delete(keyHash: string): void {
    const entry = this.#entries.get(keyHash);
    if (!entry) return;
    this.#entries.delete(keyHash);
    const hashes = this.#byUser.get(entry.principal.user.id);
    hashes?.delete(keyHash);
    if (hashes?.size === 0) this.#byUser.delete(entry.principal.user.id);
  }
}

/**
 * Entries shared by every gateway process on one Redis (or Cluster): `<prefix>gw:principal:<hash>`
 * with a TTL, and per user a set of the hashes cached for it, so that dropping a user finds them.
 * The keys are in different slots, so each command names one key.
 */
export class RedisPrincipalCache implements PrincipalCacheBackend {
  constructor(
    private readonly client: Redis | Cluster,
    private readonly prefix: string,
  ) {}

  async get(keyHash: string): Promise<Principal | undefined> {
    return parsePrincipal(await this.client.get(this.#entry(keyHash)));
  }

  async set(keyHash: string, principal: Principal): Promise<void> {
    const index = this.#index(principal.user.id);
    // The index first: an entry is never there without the index that lets an invalidation find it.
    await this.client.sadd(index, keyHash);
    await this.client.pexpire(index, PRINCIPAL_TTL_MS * 2);
    await this.client.set(this.#entry(keyHash), JSON.stringify(principal), 'PX', PRINCIPAL_TTL_MS);
  }

  async dropUser(userId: string): Promise<void> {
    const hashes = await this.client.smembers(this.#index(userId));
    await Promise.all(hashes.map((keyHash) => this.client.del(this.#entry(keyHash))));
  }

  close(): void {}

  #entry(keyHash: string): string {
    return `${this.prefix}gw:principal:${keyHash}`;
  }

  #index(userId: string): string {
    return `${this.prefix}gw:principal-user:${userId}`;
  }
}

/**
 * The lookup authentication uses: the cache, else the database (one query per key hash however many
 * requests miss at once), filling the cache. A cache that fails reads as a miss; a database that fails
 * throws, and the error handler answers 503.
 */
export class PrincipalLookup {
  readonly #loads = new Map<string, Promise<Principal | null>>();
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly repo: GatewayRepository,
    private readonly cache: PrincipalCacheBackend,
    private readonly onCacheError: (err: unknown) => void,
  ) {}

  async find(keyHash: string): Promise<Principal | null> {
    const cached = await this.cache.get(keyHash).catch((err: unknown) => {
      this.onCacheError(err);
      return undefined;
    });
    if (cached !== undefined) return cached;
    let load = this.#loads.get(keyHash);
    if (!load) {
      load = this.#load(keyHash).finally(() => this.#loads.delete(keyHash));
      this.#loads.set(keyHash, load);
    }
    return load;
  }

  /** After an admin write to the user or one of their keys: drop the user's entries now and once more later. */
  async invalidateUser(userId: string): Promise<void> {
    const drop = () => this.cache.dropUser(userId).catch(this.onCacheError);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      void drop();
    }, SECOND_INVALIDATION_MS);
    timer.unref();
    this.#timers.add(timer);
    await drop();
  }

  close(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.cache.close();
  }

  async #load(keyHash: string): Promise<Principal | null> {
    const principal = await this.repo.findPrincipalByKeyHash(keyHash);
    if (principal) await this.cache.set(keyHash, principal).catch(this.onCacheError);
    return principal;
  }
}

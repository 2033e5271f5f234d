// Redis key names for the caches: every key of one user carries the `{u:<userId>}` hash tag, so all
// keys one request touches live in one Redis Cluster slot (docs/architecture.md).
import type { CacheEntityRef } from '../types.js';

export const DEFAULT_KEY_PREFIX = 'kbe:';
const MAX_PREFIX_LENGTH = 64;

/**
 * Checks a key prefix once, at construction. Braces would open a second hash tag (Cluster hashes
 * the first `{…}` only) and spaces make keys awkward to inspect, so both are refused.
 */
export function assertKeyPrefix(prefix: unknown, option = 'prefix'): string {
  if (typeof prefix !== 'string') throw new TypeError(`${option} must be a string, got ${typeof prefix}`);
  if (prefix.length > MAX_PREFIX_LENGTH) {
    throw new TypeError(`${option} must be at most ${MAX_PREFIX_LENGTH} characters, got ${prefix.length}`);
  }
  if (/[{}\s]/.test(prefix)) throw new TypeError(`${option} must not contain '{', '}' or whitespace, got ${JSON.stringify(prefix)}`);
  return prefix;
}

/**
 * Users whose key names are kept built. Every request names the same handful of keys of its user;
 * building them anew means a fresh string for Redis to encode and, in the memory cache, to hash
 * before each Map lookup. Kept names are flat strings with their hash already computed. When this
 * many users are held, the memo starts over (cheaper than tracking recency; a user's names cost
 * well under a microsecond to build again).
 */
const USERS_KEPT = 10_000;

/** One user's key names, built on first use. */
class UserKeys {
  readonly balance: string;
  readonly leases: string;
  /** The lease book: lease hash, totals hash, expiry index (lib/cache/redis-scripts.ts LEASE_BOOK_LUA). */
  readonly leaseBook: readonly [string, string, string];
  readonly rpmUser: string;
  readonly changeStamp: string;
  /** Names with a second id (group, key, platform), one map per kind of name. */
  readonly #byId = new Map<string, Map<string, string>>();

  constructor(readonly base: string) {
    this.balance = `${base}:bal`;
    this.leases = `${base}:leases`;
    this.leaseBook = [this.leases, `${base}:leases:held`, `${base}:leases:exp`];
    this.rpmUser = `${base}:rpm:u`;
    this.changeStamp = `${base}:chg`;
  }

  /** `<base>:<infix><id>`, e.g. infix 'key:' for an API key's windows. */
  withId(infix: string, id: string): string {
    let names = this.#byId.get(infix);
    if (names === undefined) this.#byId.set(infix, (names = new Map()));
    let name = names.get(id);
    if (name === undefined) names.set(id, (name = `${this.base}:${infix}${id}`));
    return name;
  }
}

/** Builds the key names of one prefix. Ids are validated upstream (lib/validate.ts): no ':', braces or spaces. */
export class CacheKeys {
  readonly #users = new Map<string, UserKeys>();

  constructor(readonly prefix: string) {}

  #of(userId: string): UserKeys {
    let keys = this.#users.get(userId);
    if (keys === undefined) {
      if (this.#users.size >= USERS_KEPT) this.#users.clear();
      this.#users.set(userId, (keys = new UserKeys(this.user(userId))));
    }
    return keys;
  }

  /** `<prefix>{u:<userId>}`: the part every key of this user starts with. */
  user(userId: string): string {
    return `${this.prefix}{u:${userId}}`;
  }

  entity(ref: CacheEntityRef): string {
    const keys = this.#of(ref.userId);
    switch (ref.kind) {
      case 'balance':
        return keys.balance;
      case 'subscription':
        return keys.withId('sub:', ref.groupId);
      case 'apiKeyWindows':
        return keys.withId('key:', ref.apiKeyId);
      case 'platformQuota':
        return keys.withId('pq:', ref.platform);
      case 'rpmOverride':
        return keys.withId('rpmo:', ref.groupId);
    }
  }

  /** The user's change stamp, moved by every write of one of the user's entities (lib/cache/redis-scripts.ts CHANGE_STAMP_LUA). */
  changeStamp(userId: string): string {
    return this.#of(userId).changeStamp;
  }

  /** The user's reservation leases (one hash per user). */
  leases(userId: string): string {
    return this.#of(userId).leases;
  }

  /** The user's lease book: the lease hash, the running totals, the expiry index. */
  leaseBook(userId: string): readonly [string, string, string] {
    return this.#of(userId).leaseBook;
  }

  /** The per-user RPM counter. */
  rpmUser(userId: string): string {
    return this.#of(userId).rpmUser;
  }

  /** The per-user-in-group RPM counter (the group cap is per user within the group, docs/behaviour.md#requests-per-minute). */
  rpmGroup(userId: string, groupId: string): string {
    return this.#of(userId).withId('rpm:g:', groupId);
  }
}

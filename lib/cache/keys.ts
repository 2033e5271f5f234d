// Redis key names for the caches: every key of one user carries the `{u:<userId>}` hash tag, so all
// keys one request touches live in one Redis Cluster slot (DESIGN §3).
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

/** Builds the key names of one prefix. Ids are validated upstream (lib/validate.ts): no ':', braces or spaces. */
export class CacheKeys {
  constructor(readonly prefix: string) {}

  /** `<prefix>{u:<userId>}`: the part every key of this user starts with. */
  user(userId: string): string {
    return `${this.prefix}{u:${userId}}`;
  }

  entity(ref: CacheEntityRef): string {
    const base = this.user(ref.userId);
    switch (ref.kind) {
      case 'balance': return `${base}:bal`;
      case 'subscription': return `${base}:sub:${ref.groupId}`;
      case 'apiKeyWindows': return `${base}:key:${ref.apiKeyId}`;
      case 'platformQuota': return `${base}:pq:${ref.platform}`;
      case 'rpmOverride': return `${base}:rpmo:${ref.groupId}`;
    }
  }

  /** The user's change stamp, moved by every write of one of the user's entities (lib/cache/redis-scripts.ts CHANGE_STAMP_LUA). */
  changeStamp(userId: string): string {
    return `${this.user(userId)}:chg`;
  }

  /** The user's reservation leases (one hash per user). */
  leases(userId: string): string {
    return `${this.user(userId)}:leases`;
  }

  /** The per-user RPM counter. */
  rpmUser(userId: string): string {
    return `${this.user(userId)}:rpm:u`;
  }

  /** The per-user-in-group RPM counter (the group cap is per user within the group, SPEC §2.5). */
  rpmGroup(userId: string, groupId: string): string {
    return `${this.user(userId)}:rpm:g:${groupId}`;
  }
}

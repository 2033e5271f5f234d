// The one codec between cached entities and flat string hashes, shared by the Redis and memory caches
// so both read, validate and refuse exactly the same contents (docs/behaviour.md#cache-consistency).
import { MAX_USD_UNITS } from '../money.js';
import type { CacheEntityKind, CacheEntityMap } from '../types.js';

/** Current layout of platform-quota entries; an entry written under an older one reads as a miss. */
export const PLATFORM_QUOTA_SCHEMA = 1;

/** A cached entry as stored: field → string, like a Redis hash. */
export type RawHash = Record<string, string>;

/** Bookkeeping fields every entry carries next to its data. */
export const META_FIELDS = Object.freeze({
  /** Generation: bumped by each invalidation, compared by fills (docs/behaviour.md#cache-consistency). */
  generation: 'g',
  /** The store row's version of the cached value (kept by tombstones). */
  version: 'v',
  /** '1' while the entry is a tombstone: no live data. */
  tombstone: 't',
});

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MAX_MONEY = Number(MAX_USD_UNITS);
const MAX_INT_DIGITS = 17; // '-' plus 16 digits covers ±(2^53-1); longer strings are refused unparsed.

/**
 * What a stored field must look like. The Lua scripts receive the same rules (see `luaRule`), so
 * Redis and the memory cache agree on which entries are intact.
 */
export type FieldRule =
  | { type: 'int'; min: number; max: number; nullable: boolean }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'text'; maxLength: number };

type ValueKind = 'money' | 'nullableMoney' | 'held' | 'time' | 'nullableTime' | 'count' | 'nullableCount' | 'text' | 'flag' | 'status' | 'schema';

interface FieldSpec {
  /** Hash field name (short: these are stored per user and entity). */
  field: string;
  /** Entity property it maps to; null for the schema marker, which maps to nothing. */
  prop: string | null;
  kind: ValueKind;
}

const STATUSES = ['active', 'expired', 'revoked', 'suspended'] as const;

const RULES: Readonly<Record<ValueKind, FieldRule>> = {
  money: { type: 'int', min: -MAX_MONEY, max: MAX_MONEY, nullable: false },
  nullableMoney: { type: 'int', min: -MAX_MONEY, max: MAX_MONEY, nullable: true },
  held: { type: 'int', min: 0, max: MAX_MONEY, nullable: false },
  time: { type: 'int', min: 0, max: MAX_SAFE, nullable: false },
  nullableTime: { type: 'int', min: 0, max: MAX_SAFE, nullable: true },
  count: { type: 'int', min: 0, max: MAX_SAFE, nullable: false },
  nullableCount: { type: 'int', min: 0, max: MAX_SAFE, nullable: true },
  text: { type: 'text', maxLength: 128 },
  flag: { type: 'enum', values: ['0', '1'] },
  status: { type: 'enum', values: STATUSES },
  schema: { type: 'enum', values: [String(PLATFORM_QUOTA_SCHEMA)] },
};

/** Rule of the generation and version fields. */
export const META_RULE: FieldRule = RULES.count;

const f = (field: string, prop: string | null, kind: ValueKind): FieldSpec => ({ field, prop, kind });

/**
 * Store holds on the row (docs/holds.md). Always written; an entry from before they existed has no
 * such field and reads as holding nothing. The entity has the property only when it is not zero.
 */
export const HELD_FIELD = 'h';
const heldSpec = f(HELD_FIELD, 'held', 'held');

const SPECS: Readonly<Record<CacheEntityKind, readonly FieldSpec[]>> = {
  balance: [f('b', 'balance', 'money'), heldSpec],
  subscription: [
    f('i', 'subscriptionId', 'text'),
    f('st', 'status', 'status'),
    f('sa', 'startsAtMs', 'time'),
    f('e', 'expiresAtMs', 'time'),
    f('du', 'dailyUsage', 'money'),
    f('wu', 'weeklyUsage', 'money'),
    f('mu', 'monthlyUsage', 'money'),
    f('ds', 'dailyStartMs', 'nullableTime'),
    f('ws', 'weeklyStartMs', 'nullableTime'),
    f('ms', 'monthlyStartMs', 'nullableTime'),
    heldSpec,
  ],
  apiKeyWindows: [
    f('u5', 'usage5h', 'money'),
    f('u1', 'usage1d', 'money'),
    f('u7', 'usage7d', 'money'),
    f('s5', 'start5hMs', 'nullableTime'),
    f('s1', 'start1dMs', 'nullableTime'),
    f('s7', 'start7dMs', 'nullableTime'),
    heldSpec,
  ],
  platformQuota: [
    f('s', null, 'schema'),
    f('x', 'sentinel', 'flag'),
    f('dl', 'dailyLimit', 'nullableMoney'),
    f('wl', 'weeklyLimit', 'nullableMoney'),
    f('ml', 'monthlyLimit', 'nullableMoney'),
    f('du', 'dailyUsage', 'money'),
    f('wu', 'weeklyUsage', 'money'),
    f('mu', 'monthlyUsage', 'money'),
    f('ds', 'dailyStartMs', 'nullableTime'),
    f('ws', 'weeklyStartMs', 'nullableTime'),
    f('ms', 'monthlyStartMs', 'nullableTime'),
    heldSpec,
  ],
  rpmOverride: [f('o', 'value', 'nullableCount')],
};

/** A canonical integer, as String(n) writes it: no leading zeros, no negative zero. */
const INTEGER = /^(?:0|-?[1-9]\d*)$/;

/** Whether `text` satisfies `rule`; the TypeScript twin of the Lua `valid` function. */
export function checkField(rule: FieldRule, text: string | undefined): boolean {
  if (text === undefined) return false;
  switch (rule.type) {
    case 'int': {
      if (text === '') return rule.nullable;
      if (text.length > MAX_INT_DIGITS || !INTEGER.test(text)) return false;
      const n = Number(text);
      return n >= rule.min && n <= rule.max;
    }
    case 'enum':
      return rule.values.includes(text);
    case 'text':
      return text.length >= 1 && text.length <= rule.maxLength;
  }
}

/** The rule as the Lua scripts read it: `i|min|max`, `n|min|max` (nullable), `e|a|b|`, `s|maxLength`. */
export function luaRule(rule: FieldRule): string {
  switch (rule.type) {
    case 'int':
      return `${rule.nullable ? 'n' : 'i'}|${rule.min}|${rule.max}`;
    case 'enum':
      return `e|${rule.values.join('|')}|`;
    case 'text':
      return `s|${rule.maxLength}`;
  }
}

function parseValue(kind: ValueKind, text: string): unknown {
  switch (kind) {
    case 'money':
    case 'held':
      return BigInt(text);
    case 'nullableMoney':
      return text === '' ? null : BigInt(text);
    case 'time':
    case 'count':
      return Number(text);
    case 'nullableTime':
    case 'nullableCount':
      return text === '' ? null : Number(text);
    case 'flag':
      return text === '1';
    case 'text':
    case 'status':
    case 'schema':
      return text;
  }
}

function formatValue(kind: ValueKind, value: unknown): string {
  switch (kind) {
    case 'schema':
      return String(PLATFORM_QUOTA_SCHEMA);
    case 'flag':
      return value === true ? '1' : value === false ? '0' : `${String(value)}?`;
    case 'money':
      return typeof value === 'bigint' ? value.toString() : `not a bigint: ${String(value)}`;
    case 'held':
      return value === undefined ? '0' : typeof value === 'bigint' ? value.toString() : `not a bigint: ${String(value)}`;
    case 'nullableMoney':
      return value === null ? '' : typeof value === 'bigint' ? value.toString() : `not a bigint: ${String(value)}`;
    case 'time':
    case 'count':
      return typeof value === 'number' ? String(value) : `not a number: ${String(value)}`;
    case 'nullableTime':
    case 'nullableCount':
      return value === null ? '' : typeof value === 'number' ? String(value) : `not a number: ${String(value)}`;
    case 'text':
    case 'status':
      return typeof value === 'string' ? value : `not a string: ${String(value)}`;
  }
}

/** One data field ready for writing: name, value and the rule Lua checks the stored value against. */
export interface EncodedField {
  field: string;
  value: string;
  rule: FieldRule;
}

/**
 * Encodes an entity's data fields (not `g`/`v`/`t`). Throws a TypeError naming the property when
 * the value could not be read back, so the caches never store what they would then refuse.
 */
export function encodeEntity<K extends CacheEntityKind>(kind: K, value: CacheEntityMap[K]): EncodedField[] {
  const record = value as unknown as Record<string, unknown>;
  if (!checkField(META_RULE, formatValue('count', record.version))) {
    throw new TypeError(`cannot cache ${kind}.version: expected a non-negative safe integer, got ${String(record.version)}`);
  }
  return SPECS[kind].map(({ field, prop, kind: valueKind }) => {
    const text = formatValue(valueKind, prop === null ? undefined : record[prop]);
    const rule = RULES[valueKind];
    if (!checkField(rule, text)) {
      throw new TypeError(`cannot cache ${kind}.${prop ?? field}: invalid value ${JSON.stringify(text)}`);
    }
    return { field, value: text, rule };
  });
}

/** What a stored hash holds, as both caches interpret it. */
export interface EntryState<T> {
  /** `g`, or 0 when absent or unreadable: the value a fill must present. */
  generation: number;
  /** `v` when readable (live entries and tombstones), else null. */
  version: number | null;
  /** The decoded value; null for absent, tombstoned, corrupt or old-schema entries (a miss). */
  live: T | null;
}

/** Reads an integer meta field, or null when absent or unreadable. */
function readMeta(hash: RawHash, field: string): number | null {
  const text = hash[field];
  return checkField(META_RULE, text) ? Number(text) : null;
}

/**
 * Interprets a stored hash (null or {} = absent). Never throws: anything unreadable is a miss.
 * An entry is live iff it is not a tombstone, its version is readable and every data field
 * satisfies its rule — the same test the Lua fill script applies.
 */
export function inspectEntry<K extends CacheEntityKind>(kind: K, hash: RawHash | null): EntryState<CacheEntityMap[K]> {
  if (hash === null) return { generation: 0, version: null, live: null };
  const generation = readMeta(hash, META_FIELDS.generation) ?? 0;
  const version = readMeta(hash, META_FIELDS.version);
  if (version === null || hash[META_FIELDS.tombstone] === '1') return { generation, version, live: null };
  const decoded: Record<string, unknown> = { version };
  for (const { field, prop, kind: valueKind } of SPECS[kind]) {
    const text = hash[field];
    if (valueKind === 'held' && (text === undefined || text === '0')) continue;
    if (!checkField(RULES[valueKind], text)) return { generation, version, live: null };
    if (prop !== null) decoded[prop] = parseValue(valueKind, text as string);
  }
  return { generation, version, live: decoded as unknown as CacheEntityMap[K] };
}

/** Turns a flat [field, value, field, value, …] reply into a hash; null when the reply is malformed. */
export function hashFromFlatReply(reply: unknown): RawHash | null {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) return null;
  const hash: RawHash = {};
  for (let i = 0; i < reply.length; i += 2) {
    const field: unknown = reply[i];
    const value: unknown = reply[i + 1];
    if (typeof field !== 'string' || typeof value !== 'string') return null;
    hash[field] = value;
  }
  return hash;
}

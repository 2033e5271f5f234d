// What differs between PostgreSQL and SQLite: how to run raw SQL and get rows back, and how money and times travel.
import type { Knex } from 'knex';
import { formatUsd, MAX_USD_UNITS, MoneyError, parseUsd } from '../money.js';
import { StoreDataError } from './store-errors.js';

export type DialectName = 'postgresql' | 'sqlite';

/** A connection or transaction; both run raw SQL. */
export type Db = Knex | Knex.Transaction;

export interface Dialect {
  readonly name: DialectName;
  /** SQL for one money parameter (exactly typed, so CASE branches and arithmetic never go through floats). */
  readonly moneyParam: string;
  /** SQL for one BIGINT parameter (epoch ms). */
  readonly bigintParam: string;
  /** Runs raw SQL with `?` bindings and returns its rows (RETURNING included). */
  rows(db: Db, sql: string, bindings: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /** Binds an amount of units: a decimal string on PostgreSQL, an integer of 1e-8 USD on SQLite. */
  money(units: bigint): unknown;
  /** Reads a money column back as units; anything but the dialect's own representation is corrupt. */
  decodeMoney(value: unknown, column: string): bigint;
}

// PostgreSQL NUMERIC arrives as a string (pg's default for NUMERIC, never a float) and leaves as
// formatUsd's decimal string, so no JS number ever holds an amount.
const postgres: Dialect = {
  name: 'postgresql',
  moneyParam: 'CAST(? AS NUMERIC(20,8))',
  bigintParam: 'CAST(? AS BIGINT)',
  async rows(db, sql, bindings) {
    const result = (await db.raw(sql, bindings as Knex.RawBinding[])) as { rows?: Record<string, unknown>[] };
    return result.rows ?? [];
  },
  money: (units) => formatUsd(units),
  decodeMoney(value, column) {
    if (typeof value !== 'string') throw new StoreDataError(column, `expected a NUMERIC string, got ${describe(value)}`);
    try {
      return parseUsd(value, column);
    } catch (err) {
      throw new StoreDataError(column, err instanceof MoneyError ? err.message : String(err), { cause: err });
    }
  },
};

// SQLite has no exact decimal type: money is an INTEGER count of 1e-8 USD. better-sqlite3 returns
// integers as BigInt under `safeIntegers`, so nothing is rounded through a double on the way out.
function sqlite(driverName: string): Dialect {
  const better = driverName === 'better-sqlite3';
  return {
    name: 'sqlite',
    moneyParam: '?',
    bigintParam: '?',
    async rows(db, sql, bindings) {
      const query = db.raw(sql, bindings as Knex.RawBinding[]);
      const result: unknown = await (better ? query.options({ safeIntegers: true }) : query);
      return Array.isArray(result) ? (result as Record<string, unknown>[]) : [];
    },
    // Bound as a number, which is exact: every amount the store accepts is within ±(2^53−1) units.
    // (A BigInt binding would also work, but knex's error formatting throws on one and would hide
    // the real error — SQLITE_BUSY included — behind a TypeError.)
    money: (units) => Number(units),
    decodeMoney(value, column) {
      const units = typeof value === 'bigint' ? value : typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : null;
      if (units === null) throw new StoreDataError(column, `expected an integer of 1e-8 USD, got ${describe(value)}`);
      if (units > MAX_USD_UNITS || units < -MAX_USD_UNITS)
        throw new StoreDataError(column, `${formatUsd(units)} USD is beyond the exact range (±${formatUsd(MAX_USD_UNITS)})`);
      return units;
    },
  };
}

const cache = new WeakMap<object, Dialect>();

/** The dialect of a knex instance; only PostgreSQL and SQLite are supported. */
export function dialectOf(knex: Knex): Dialect {
  const client = knex.client as { dialect?: string; driverName?: string };
  const known = cache.get(client);
  if (known) return known;
  let dialect: Dialect;
  if (client.dialect === 'postgresql') dialect = postgres;
  else if (client.dialect === 'sqlite3') dialect = sqlite(client.driverName ?? '');
  else throw new TypeError(`KnexBillingStore supports PostgreSQL and SQLite, got knex client ${JSON.stringify(client.dialect)}`);
  cache.set(client, dialect);
  return dialect;
}

// ---------------------------------------------------------------------------------------------
// Decoding column values. Every reader checks what it gets: a row is the store's truth, and a wrong
// value must fail loudly rather than become a wrong balance.

/** A BIGINT/INTEGER column (pg returns BIGINT as a string) as a safe JS integer. */
export function decodeInteger(value: unknown, column: string): number {
  const n = typeof value === 'string' && /^-?\d{1,16}$/.test(value) ? Number(value) : typeof value === 'bigint' ? Number(value) : value;
  if (typeof n === 'number' && Number.isSafeInteger(n)) return n;
  throw new StoreDataError(column, `expected a safe integer, got ${describe(value)}`);
}

export function decodeIntegerOrNull(value: unknown, column: string): number | null {
  return value === null || value === undefined ? null : decodeInteger(value, column);
}

export function decodeString(value: unknown, column: string): string {
  if (typeof value === 'string') return value;
  throw new StoreDataError(column, `expected a string, got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  return typeof value === 'object' && value !== null ? 'an object' : String(value);
}

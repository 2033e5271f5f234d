// Shared pieces of the store contract suite: the fixture, unique ids, times and settlement builders.
import type { Knex } from 'knex';
import { ManualClock } from '../../lib/clock.js';
import { parseUsd } from '../../lib/money.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import type { SettlementInput, TimeContext } from '../../lib/types.js';
import { uniqueSuffix } from '../helpers/services.js';

/** What a backend hands the suite: a migrated database and how to get rid of it. */
export interface OpenedDatabase {
  knex: Knex;
  destroy(): Promise<void>;
}

export interface StoreFixture {
  knex: Knex;
  store: KnexBillingStore;
  /** The store's metadata clock (updated_at, default subscription start). */
  clock: ManualClock;
  /** A fresh id, unique within the run, so tests sharing one database never see each other's rows. */
  id(prefix: string): string;
  /** SQL statements run through `knex` since the fixture was created. */
  queries(): number;
}

/** Reads the fixture lazily: it exists only once the suite's `before` hook has run. */
export type GetFixture = () => StoreFixture;

export const CLOCK_START_MS = Date.parse('2024-01-01T00:00:00Z');

export function makeFixture(db: OpenedDatabase): StoreFixture {
  const suffix = uniqueSuffix();
  let counter = 0;
  let queryCount = 0;
  db.knex.on('query', () => {
    queryCount++;
  });
  const clock = new ManualClock(CLOCK_START_MS);
  return {
    knex: db.knex,
    store: new KnexBillingStore(db.knex, { clock }),
    clock,
    id: (prefix) => `${prefix}${++counter}-${suffix}`,
    queries: () => queryCount,
  };
}

/** USD as exact units, for readable expectations: usd('1.5') === 150_000_000n. */
export const usd = (amount: string): bigint => parseUsd(amount);

/** A TimeContext at an ISO instant (which must carry its own offset or Z). */
export function at(iso: string, timezone = 'UTC'): TimeContext {
  const nowMs = Date.parse(iso);
  if (Number.isNaN(nowMs)) throw new Error(`bad test instant ${iso}`);
  return { nowMs, timezone };
}

export const ms = (iso: string): number => Date.parse(iso);

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

/** A balance-mode settlement without key or platform unless overridden. */
export function settlement(fields: Partial<SettlementInput> & { requestId: string; userId: string }): SettlementInput {
  return {
    apiKeyId: '',
    groupId: null,
    mode: 'balance',
    costUnits: usd('0.01'),
    platform: null,
    trackKeyWindows: false,
    time: at('2024-03-06T12:00:00Z'),
    ...fields,
  };
}

/** The usage-log rows of a user, straight from the table (not through the store under test). */
export async function logRows(fx: StoreFixture, userId: string): Promise<{ request_id: string; api_key_id: string }[]> {
  return fx.knex('billing_usage_log').where({ user_id: userId }).select('request_id', 'api_key_id').orderBy('id');
}

// A process that holds reservations and then only renews them (run by process-kill-holds.test.ts):
// on the given schema and key prefix it reserves `HOLDS` estimates of `ESTIMATE_USD` for USER_ID,
// prints "holding <n>", and stays alive, renewing, until it is killed.
import { Redis } from 'ioredis';
import { createBillingCore } from '../../lib/billing-core.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { pgKnex } from '../helpers/postgres.js';
import { REDIS_URL } from '../helpers/services.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};

const knex = pgKnex(env('PG_SCHEMA'), 2);
const redis = new Redis(REDIS_URL);
const core = createBillingCore({
  store: new KnexBillingStore(knex),
  cache: new RedisBillingCache(redis, { prefix: env('REDIS_PREFIX') }),
  reservationTtlMs: Number(env('TTL_MS')),
});
const subject = { user: { id: env('USER_ID') } };
const holds = Number(env('HOLDS'));
let held = 0;
for (let i = 0; i < holds; i += 50) {
  const decisions = await Promise.all(Array.from({ length: Math.min(50, holds - i) }, () => core.check(subject, { estimateUsd: env('ESTIMATE_USD') })));
  held += decisions.filter((d) => d.allowed).length;
}
process.stdout.write(`holding ${held}\n`);
// Never settles or releases: the renewer keeps every hold alive until the process dies.
setInterval(() => {}, 60_000);

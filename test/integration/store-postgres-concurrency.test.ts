// 2,000 settlements from 20 concurrent connections on PostgreSQL, 10% of them repeats: every total exact, every row once, nothing escapes.
import { expect } from 'chai';
import { parseUsd } from '../../lib/money.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import type { SettlementInput } from '../../lib/types.js';
import { createPgSchema, type PgSchema } from '../helpers/postgres.js';
import { requirePostgres } from '../helpers/services.js';

const SETTLEMENTS = 2000;
const CONCURRENCY = 20;
const INITIAL_BALANCE = 1_000n * 100_000_000n;
const TIME = { nowMs: Date.parse('2024-03-06T12:00:00Z'), timezone: 'Europe/Berlin' };

interface Subject {
  userId: string;
  keys: string[];
  mode: 'balance' | 'subscription';
}

/** Random units up to 1 USD; one in twenty is zero (logged, not charged). */
function randomCost(): bigint {
  return Math.random() < 0.05 ? 0n : BigInt(Math.floor(Math.random() * 100_000_000));
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T;
}

describe('KnexBillingStore on PostgreSQL under concurrency', function () {
  this.timeout(90_000);
  let pg: PgSchema | undefined;

  before(async function () {
    await requirePostgres(this);
    pg = await createPgSchema({ poolMax: CONCURRENCY });
  });

  after(async () => {
    await pg?.destroy();
  });

  it(`settles ${SETTLEMENTS} requests from ${CONCURRENCY} connections with 10% repeats exactly once each`, async () => {
    const { knex } = pg!;
    const store = new KnexBillingStore(knex);
    // Few subjects, so that many settlements contend for the same account, key and quota rows.
    const subjects: Subject[] = [];
    for (let u = 0; u < 8; u++) subjects.push({ userId: `bal${u}`, keys: [`k${u}a`, `k${u}b`], mode: 'balance' });
    for (let u = 0; u < 3; u++) subjects.push({ userId: `sub${u}`, keys: [`s${u}a`], mode: 'subscription' });
    for (const s of subjects) {
      if (s.mode === 'balance') {
        await store.topUp(s.userId, INITIAL_BALANCE);
        await store.setPlatformQuota(s.userId, 'openai', { dailyLimit: 1n });
      } else {
        await store.upsertSubscription({ userId: s.userId, groupId: 'pro', expiresAtMs: TIME.nowMs + 86_400_000 });
      }
    }

    // Every tenth request repeats an earlier one, half of them one still likely in flight.
    const originals: SettlementInput[] = [];
    const work: SettlementInput[] = [];
    for (let i = 0; i < SETTLEMENTS; i++) {
      if (i % 10 === 9) {
        work.push(Math.random() < 0.5 ? pick(originals.slice(-CONCURRENCY)) : pick(originals));
        continue;
      }
      const s = pick(subjects);
      const input: SettlementInput = {
        requestId: `req-${i}`,
        apiKeyId: pick(s.keys),
        userId: s.userId,
        groupId: s.mode === 'subscription' ? 'pro' : null,
        mode: s.mode,
        costUnits: randomCost(),
        platform: pick(['openai', 'anthropic']),
        trackKeyWindows: true,
        model: 'm',
        inputTokens: i,
        outputTokens: 1,
        time: TIME,
      };
      originals.push(input);
      work.push(input);
    }

    let next = 0;
    let duplicates = 0;
    const worker = async () => {
      while (next < work.length) {
        const input = work[next++]!;
        if ((await store.settle(input)).duplicate) duplicates++;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    expect(duplicates).to.equal(SETTLEMENTS / 10);

    // Expected totals from the distinct requests only.
    const sum = (rows: SettlementInput[]) => rows.reduce((total, r) => total + r.costUnits, 0n);
    const charged = (rows: SettlementInput[]) => rows.filter((r) => r.costUnits > 0n).length;
    for (const s of subjects) {
      const mine = originals.filter((r) => r.userId === s.userId);
      if (s.mode === 'balance') {
        expect(await store.getBalance(s.userId), s.userId).to.deep.equal({ version: 1 + charged(mine), balance: INITIAL_BALANCE - sum(mine) });
        const openai = mine.filter((r) => r.platform === 'openai');
        expect(await store.getPlatformQuota(s.userId, 'openai'), s.userId).to.deep.include({
          version: 1 + charged(openai),
          dailyUsage: sum(openai),
          weeklyUsage: sum(openai),
          monthlyUsage: sum(openai),
        });
      } else {
        expect(await store.getActiveSubscription(s.userId, 'pro', TIME), s.userId).to.deep.include({
          version: 1 + charged(mine),
          dailyUsage: sum(mine),
          weeklyUsage: sum(mine),
          monthlyUsage: sum(mine),
        });
      }
      for (const key of s.keys) {
        const used = mine.filter((r) => r.apiKeyId === key);
        expect(await store.getApiKeyWindows(s.userId, key), key).to.deep.include({
          version: charged(used),
          usage5h: sum(used),
          usage1d: sum(used),
          usage7d: sum(used),
        });
      }
    }

    const logged: { request_id: string; cost: string }[] = await knex('billing_usage_log').select('request_id', 'cost');
    expect(logged).to.have.length(originals.length);
    expect(new Set(logged.map((r) => r.request_id)).size).to.equal(originals.length);
    const costs = new Map(originals.map((r) => [r.requestId, r.costUnits]));
    for (const row of logged) expect(parseUsd(row.cost), row.request_id).to.equal(costs.get(row.request_id));
  });
});

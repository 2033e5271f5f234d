// Store contract: group commit (docs/group-commit.md). A batch gives exactly what the same settlements
// give one by one in arrival order — rows, versions, usage rows and each settlement's own outcome —
// shown on random settlement streams over random times (fast-check), plus the cases by name.
import { expect } from 'chai';
import fc from 'fast-check';
import { SettlementConflictError, SettlementTargetMissingError } from '../../lib/store/store-errors.js';
import type { SettleOutcome, SettlementInput } from '../../lib/types.js';
import { DAY, logRows, settlement, usd, type GetFixture, type StoreFixture } from './store-fixtures.js';

const TABLES_BY_USER = ['billing_accounts', 'billing_subscriptions', 'billing_api_key_windows', 'billing_platform_quotas'] as const;
const HOUR = 3_600_000;
const START = Date.parse('2024-03-09T22:00:00Z'); // a Saturday evening: days and weeks end within the stream
const ZONES = ['UTC', 'Asia/Shanghai', 'America/New_York'];

/** One generated settlement, by index into small pools so that users, keys and ids collide. */
interface Step {
  user: number;
  mode: 'balance' | 'subscription';
  cost: number;
  platform: boolean;
  key: number;
  track: boolean;
  charge: boolean;
  id: number;
  /** Only some repeats carry other content (a conflict). */
  alter: boolean;
  offsetMs: number;
}

const step: fc.Arbitrary<Step> = fc.record({
  user: fc.integer({ min: 0, max: 3 }),
  mode: fc.constantFrom('balance' as const, 'balance' as const, 'subscription' as const),
  cost: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000_000 })),
  platform: fc.boolean(),
  key: fc.integer({ min: 0, max: 2 }),
  track: fc.boolean(),
  charge: fc.constantFrom(true, true, true, false),
  id: fc.integer({ min: 0, max: 40 }),
  alter: fc.boolean(),
  offsetMs: fc.integer({ min: 0, max: 9 * DAY }),
});

/**
 * Users 0–2 have an account, 3 does not (a missing target); 0 has a month's subscription, 1 a
 * one-time daily card (charged on after it ends too, as admitted requests are); 0 and 2 a quota.
 */
async function seed(fx: StoreFixture, users: string[]): Promise<void> {
  const { store } = fx;
  for (const [i, user] of users.entries()) {
    if (i < 3) await store.setBalance(user, usd('10'));
    if (i === 0) await store.upsertSubscription({ userId: user, groupId: 'g', startsAtMs: START - DAY, expiresAtMs: START + 30 * DAY });
    if (i === 1) await store.upsertSubscription({ userId: user, groupId: 'g', startsAtMs: START - 2 * HOUR, expiresAtMs: START + 22 * HOUR });
    if (i === 0 || i === 2) await store.setPlatformQuota(user, 'openai', { dailyLimit: usd('1'), weeklyLimit: null, monthlyLimit: usd('5') });
  }
}

function inputs(steps: readonly Step[], users: string[], side: string, timezone: string): SettlementInput[] {
  return steps.map((s) =>
    settlement({
      requestId: `${side}-r${s.id}`,
      userId: users[s.user]!,
      mode: s.mode,
      groupId: s.mode === 'subscription' ? 'g' : null,
      costUnits: BigInt(s.cost + (s.alter ? 1 : 0)),
      platform: s.platform ? 'openai' : null,
      apiKeyId: s.key === 0 ? '' : `k${s.key}`,
      trackKeyWindows: s.track,
      charge: s.charge,
      time: { nowMs: START + s.offsetMs, timezone },
    }),
  );
}

/** What one side ended with, ids stripped: every row of its users, its usage rows, its outcomes. */
async function snapshot(fx: StoreFixture, users: string[], outcomes: SettleOutcome[], side: string): Promise<unknown> {
  const rows: unknown[] = [];
  for (const table of TABLES_BY_USER) {
    for (const [i, user] of users.entries()) {
      const found = await fx.knex(table).where({ user_id: user }).select('*');
      found.sort((x: Record<string, unknown>, y: Record<string, unknown>) =>
        JSON.stringify(Object.values(x).map(String)).localeCompare(JSON.stringify(Object.values(y).map(String))),
      );
      rows.push(
        found.map((row: Record<string, unknown>) => {
          const { id: _id, user_id: _user, ...rest } = row;
          return { table, user: i, ...Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, String(v)])) };
        }),
      );
    }
  }
  const logs = [];
  for (const [i, user] of users.entries()) {
    for (const row of await logRows(fx, user)) logs.push({ user: i, request: row.request_id.slice(side.length), key: row.api_key_id });
  }
  logs.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  const shown = outcomes.map((o) => (o.ok ? `ok${o.result.duplicate ? ':duplicate' : ''}` : o.error.name));
  return { rows, logs, outcomes: shown };
}

export function batchContract(fx: GetFixture): void {
  it('a random stream settled in one batch ends exactly as the same stream one by one: rows, versions, usage rows, outcomes', async function () {
    this.timeout(120_000);
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 30 }), fc.constantFrom(...ZONES), async (steps, timezone) => {
        run++;
        // Arrival order is time order, as settlements of a running gateway are.
        const ordered = [...steps].sort((a, b) => a.offsetMs - b.offsetMs);
        const f = fx();
        const users = (side: string) => [0, 1, 2, 3].map((i) => f.id(`${side}${run}u${i}-`));
        const [one, batched] = [users('a'), users('b')];
        await seed(f, one);
        await seed(f, batched);
        const sequential: SettleOutcome[] = [];
        for (const input of inputs(ordered, one, `a${run}`, timezone)) {
          sequential.push(
            await f.store.settle(input).then(
              (result) => ({ ok: true as const, result }),
              (error: Error) => ({ ok: false as const, error }),
            ),
          );
        }
        const together = await f.store.settleBatch(inputs(ordered, batched, `b${run}`, timezone));
        expect(await snapshot(f, batched, together, `b${run}`)).to.deep.equal(await snapshot(f, one, sequential, `a${run}`));
      }),
      { numRuns: 25 },
    );
  });

  it('a repeat of a settlement whose account is missing runs after that failure and before the settlements behind it (found by the property)', async () => {
    const { store, id, knex } = fx();
    const [ghost, user] = [id('ghost'), id('u')];
    await store.setBalance(user, usd('10'));
    const request = id('r');
    const t = (ms: number) => ({ nowMs: START + ms, timezone: 'UTC' });
    const outcomes = await store.settleBatch([
      settlement({ requestId: request, userId: ghost, apiKeyId: 'k', costUnits: 1n, time: t(0) }),
      settlement({ requestId: request, userId: user, apiKeyId: 'k', costUnits: 1n, time: t(0) }),
      settlement({ requestId: id('r'), userId: user, costUnits: 1n, time: t(1) }),
    ]);
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.error.name))).to.deep.equal(['SettlementTargetMissingError', 'ok', 'ok']);
    // Applied in arrival order: the account was last written by the third settlement.
    const [row] = await knex('billing_accounts').where({ user_id: user }).select('balance', 'updated_at_ms', 'version');
    expect([String(row.updated_at_ms), Number(row.version)]).to.deep.equal([String(START + 1), 3]);
  });

  it('repeats in one batch: the same content is the duplicate and charges once, other content the conflict', async () => {
    const { store, id } = fx();
    const user = id('u');
    await store.setBalance(user, usd('5'));
    const request = id('r');
    const outcomes = await store.settleBatch([
      settlement({ requestId: request, userId: user, costUnits: usd('1') }),
      settlement({ requestId: request, userId: user, costUnits: usd('1') }),
      settlement({ requestId: request, userId: user, costUnits: usd('2') }),
      settlement({ requestId: id('r'), userId: user, costUnits: usd('0.5') }),
    ]);
    expect(outcomes.map((o) => (o.ok ? o.result.duplicate : o.error.constructor))).to.deep.equal([false, true, SettlementConflictError, false]);
    expect(await store.getBalance(user)).to.deep.equal({ version: 3, balance: usd('3.5') });
  });

  it('a settlement whose account is missing fails alone; its batch-mates commit; its repeat fails the same way', async () => {
    const { store, id } = fx();
    const [user, ghost] = [id('u'), id('ghost')];
    await store.setBalance(user, usd('5'));
    const ghostRequest = id('r');
    const outcomes = await store.settleBatch([
      settlement({ requestId: id('r'), userId: user, costUnits: usd('1') }),
      settlement({ requestId: ghostRequest, userId: ghost, costUnits: usd('1') }),
      settlement({ requestId: id('r'), userId: user, costUnits: usd('1') }),
      settlement({ requestId: ghostRequest, userId: ghost, costUnits: usd('1') }),
    ]);
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.error.constructor))).to.deep.equal(['ok', SettlementTargetMissingError, 'ok', SettlementTargetMissingError]);
    expect(await store.getBalance(user)).to.deep.equal({ version: 3, balance: usd('3') });
    expect(await logRows(fx(), ghost)).to.deep.equal([]);
  });

  it('each touched row is in the result of the last settlement on it, once, with its committed version', async () => {
    const { store, id } = fx();
    const [a, b] = [id('u'), id('u')];
    await store.setBalance(a, usd('5'));
    await store.setBalance(b, usd('5'));
    const outcomes = await store.settleBatch([
      settlement({ requestId: id('r'), userId: a, costUnits: usd('1') }),
      settlement({ requestId: id('r'), userId: b, costUnits: usd('1') }),
      settlement({ requestId: id('r'), userId: a, costUnits: usd('1'), apiKeyId: 'k', trackKeyWindows: true }),
    ]);
    const rows = outcomes.map((o) => (o.ok ? Object.keys(o.result).filter((k) => !['duplicate', 'requestId', 'costUnits'].includes(k)) : []));
    expect(rows).to.deep.equal([[], ['balance'], ['balance', 'apiKeyWindows']]);
    expect(outcomes[2]!.ok && outcomes[2]!.result.balance).to.deep.equal(await store.getBalance(a));
    expect(outcomes[2]!.ok && outcomes[2]!.result.balance).to.deep.equal({ version: 3, balance: usd('3') });
    expect(outcomes[2]!.ok && outcomes[2]!.result.apiKeyWindows).to.deep.equal(await store.getApiKeyWindows(a, 'k'));
  });

  it('refuses malformed items alone, naming the field; the others commit', async () => {
    const { store, id } = fx();
    const user = id('u');
    await store.setBalance(user, usd('5'));
    const outcomes = await store.settleBatch([
      settlement({ requestId: id('r'), userId: user, costUnits: usd('1') }),
      settlement({ requestId: 'has space', userId: user, costUnits: usd('1') }),
      settlement({ requestId: id('r'), userId: user, costUnits: -1n }),
    ]);
    expect(outcomes.map((o) => (o.ok ? 'ok' : (o.error as { field?: string }).field))).to.deep.equal(['ok', 'requestId', 'costUnits']);
    expect(await store.getBalance(user)).to.deep.include({ balance: usd('4') });
  });
}

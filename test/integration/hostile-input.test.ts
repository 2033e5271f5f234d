// Hostile input, searched at random (fast-check): random subjects through the chain over HTTP, random
// costs into settle(), random arguments to every core.admin method, random corrupt cache contents
// under the chain. Properties: never a 500, never an internal text in a response, bad input answered
// 400 (HTTP) or rejected with an error naming the field (API), and nothing read from or written to
// the store or the cache for it; a corrupt entry is a miss, answered from the store as if it were not there.
import { expect } from 'chai';
import fc from 'fast-check';
import request from 'supertest';
import { inspectEntry } from '../../lib/cache/entity-codec.js';
import { MoneyError } from '../../lib/money.js';
import type { BillingSubject, CacheEntityRef } from '../../lib/types.js';
import { BillingValidationError } from '../../lib/validate.js';
import { describeChain } from '../helpers/chain-harness.js';
import { failOnUnhandledRejections } from '../helpers/unhandled-rejections.js';

/** Fewer runs on the slower backend pair; the seed is printed by fast-check on failure. */
const RUNS = { 'memory+sqlite': 150, 'redis+postgres': 60 } as const;

const nasty = fc.constantFrom(
  '',
  ' ',
  'a{b}',
  '{u:1}',
  'a:b',
  'a\u0000b',
  'a\r\nb',
  'x\ty',
  '😀',
  'é',
  '../etc',
  '*',
  '?',
  '%00',
  'a'.repeat(10_000),
  'a'.repeat(129),
);
const text = fc.oneof(fc.string({ maxLength: 12 }), nasty);
const numberish = fc.oneof(
  fc.integer({ min: -1_000_000, max: 1_000_000 }),
  fc.double(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, 2 ** 53, -(2 ** 53), 1.5, 1e308, 5e-324),
);
const anything = fc.oneof(
  text,
  numberish,
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }),
  fc.object({ maxDepth: 1 }),
  fc.array(fc.integer(), { maxLength: 2 }),
);
const amount = fc.oneof(
  fc.constantFrom(
    '0',
    '0.01',
    '1',
    '10',
    '-1',
    '-0',
    '-0.000000001',
    '0.000000001',
    '1e-3',
    '1e400',
    '1e-400',
    '0x10',
    '1,5',
    ' 2 ',
    '+3',
    '.5',
    '5.',
    'NaN',
    'Infinity',
  ),
  numberish,
  anything,
);
/** Mostly a valid value, sometimes a hostile one: a subject with a dozen fields then has one bad field in a few, none in about a third. */
const mostly = <T, H>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<H>) => fc.oneof({ arbitrary: valid, weight: 12 }, { arbitrary: hostile, weight: 1 });
const id = mostly(fc.constantFrom('u1', 'user-2', 'k.3', 42), fc.oneof(text, numberish, anything));
const cap = mostly(fc.option(fc.integer({ min: -5, max: 1000 })), fc.oneof(numberish, anything));
const usd = mostly(fc.option(fc.constantFrom('0', '1', '2.5', '1000', 100)), amount);

const subjectArb = fc.record(
  {
    user: mostly(
      fc.record({
        id,
        rpmLimit: cap,
        groupRpmOverride: cap,
        maxConcurrency: mostly(fc.option(fc.integer({ min: 0, max: 100 })), fc.oneof(numberish, anything)),
      }),
      anything,
    ),
    apiKey: fc.option(fc.record({ id, rateLimit5h: usd, rateLimit1d: usd, rateLimit7d: usd, maxConcurrency: mostly(fc.option(fc.nat(50)), numberish) })),
    group: fc.option(
      fc.record({
        id,
        billingType: mostly(fc.constantFrom('standard', 'subscription'), anything),
        dailyLimitUsd: usd,
        weeklyLimitUsd: usd,
        monthlyLimitUsd: usd,
        rpmLimit: cap,
      }),
    ),
    subscription: fc.option(fc.record({ id })),
    platform: fc.option(mostly(fc.constantFrom('openai', 'anthropic'), fc.oneof(text, anything))),
  },
  { requiredKeys: ['user'] },
) as fc.Arbitrary<BillingSubject>;

/** What a response may never contain: stack frames, SQL, Redis or Node error texts. */
const INTERNAL = /\bat .+\(|Error:|SELECT|INSERT|UPDATE|knex|sqlite|postgres|ERR |WRONGTYPE|ioredis|ECONN|TypeError|RangeError|undefined/i;

/** Waits until the background work of earlier runs (cache fills, queued writes) has stopped calling the backends. */
async function quiet(total: () => number): Promise<void> {
  for (let last = -1; last !== total(); ) {
    last = total();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The field an error names, whichever of the package's errors it is. */
function fieldOf(err: unknown): string | undefined {
  return err instanceof BillingValidationError || err instanceof MoneyError ? err.field : undefined;
}

describeChain('hostile input', (env) => {
  failOnUnhandledRejections();

  it('random subjects through the chain over HTTP: a 2xx, 4xx or clear denial, never a 500 or internal text; a 400 touches nothing', async function () {
    this.timeout(180_000);
    const { core } = env();
    await core.admin.setBalance('u1', '5');
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(subjectArb, async (subject) => {
        const { store, cache } = env();
        await quiet(() => store.total() + cache.total());
        store.reset();
        cache.reset();
        const res = await request(env().app({ subject }).callback()).post('/v1/chat/completions');
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        expect([200, 400, 403, 429], `status ${res.status} ${res.text.slice(0, 200)}`).to.include(res.status);
        expect(res.text).to.not.match(INTERNAL);
        if (res.status === 400) {
          expect(res.body.error.code).to.equal('invalid_subject');
          expect(res.body.error.message).to.match(/^(Invalid billing input: subject\.[a-zA-Z.0-9]+|No billing subject for this request)$/);
          expect(store.total() + cache.total(), 'store and cache calls for a refused subject').to.equal(0);
        }
      }),
      { numRuns: RUNS[env().backend] },
    );
    console.log(
      `      ${RUNS[env().backend]} random subjects: ${[...statuses]
        .sort()
        .map(([status, n]) => `${n} × ${status}`)
        .join(', ')}`,
    );
    // The search reached both sides: subjects refused as input and subjects that went through the checks.
    expect(statuses.get(400), 'some refused').to.be.greaterThan(0);
    expect((statuses.get(200) ?? 0) + (statuses.get(403) ?? 0), 'some checked').to.be.greaterThan(0);
  });

  it('random costs into settle(): stored exactly once at their exact value, or refused naming costUsd with nothing written', async function () {
    this.timeout(180_000);
    const { core, realStore } = env();
    const userId = env().userId('cost');
    await core.admin.setBalance(userId, '1000');
    let n = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(amount, async (costUsd) => {
        const { store } = env();
        const before = (await realStore.getBalance(userId))!.balance;
        store.reset();
        let receipt: Awaited<ReturnType<typeof core.settle>> | undefined;
        let error: unknown;
        try {
          receipt = await core.settle({ requestId: `hostile-${n++}`, subject: { user: { id: userId } }, costUsd: costUsd as string });
        } catch (err) {
          error = err;
        }
        const after = (await realStore.getBalance(userId))!.balance;
        if (error !== undefined) {
          refused++;
          expect(fieldOf(error), String(error)).to.equal('costUsd');
          expect(store.count('settle') + store.count('settleBatch'), 'store writes for a refused cost').to.equal(0);
          expect(after).to.equal(before);
        } else {
          expect(typeof costUsd === 'string' || typeof costUsd === 'number', `accepted ${String(costUsd)}`).to.equal(true);
          expect(Number(receipt!.costUsd) >= 0).to.equal(true);
          expect(before - after, `charged for ${String(costUsd)}`).to.equal(BigInt(receipt!.costUsd.replace('.', '')));
        }
      }),
      { numRuns: RUNS[env().backend] },
    );
    console.log(`      ${n} random costs: ${n - refused} settled, ${refused} refused`);
    expect(refused).to.be.greaterThan(0);
    expect(n - refused).to.be.greaterThan(0);
  });

  it('random arguments to every core.admin method: applied, or refused naming the field with nothing written', async function () {
    this.timeout(180_000);
    const { core } = env();
    const calls: [string, fc.Arbitrary<() => Promise<unknown>>][] = [
      [
        'topUp',
        fc.tuple(id, amount).map(
          ([u, a]) =>
            () =>
              core.admin.topUp(u as string, a as string),
        ),
      ],
      [
        'setBalance',
        fc.tuple(id, amount).map(
          ([u, a]) =>
            () =>
              core.admin.setBalance(u as string, a as string),
        ),
      ],
      [
        'setPlatformQuota',
        fc.tuple(id, fc.oneof(fc.constant('openai'), text), amount, amount).map(
          ([u, p, d, w]) =>
            () =>
              core.admin.setPlatformQuota(u as string, p, { dailyLimitUsd: d as string, weeklyLimitUsd: w as string }),
        ),
      ],
      [
        'setRpmOverride',
        fc.tuple(id, id, fc.oneof(numberish, anything)).map(
          ([u, g, v]) =>
            () =>
              core.admin.setRpmOverride(u as string, g as string, v as number),
        ),
      ],
      [
        'resetApiKeyWindows',
        fc.tuple(id, id).map(
          ([u, k]) =>
            () =>
              core.admin.resetApiKeyWindows(u as string, k as string),
        ),
      ],
      [
        'upsertSubscription',
        fc
          .record({
            userId: id,
            groupId: id,
            expiresAt: fc.oneof(numberish, anything, fc.date()),
            status: fc.oneof(fc.constantFrom('active', 'revoked'), anything),
          })
          .map((input) => () => core.admin.upsertSubscription(input as never)),
      ],
    ];
    for (const [name, arb] of calls) {
      await fc.assert(
        fc.asyncProperty(arb, async (call) => {
          const { store, cache } = env();
          await quiet(() => store.total() + cache.total());
          store.reset();
          cache.reset();
          let returned: Promise<unknown> | undefined;
          expect(() => (returned = call()), `${name} threw synchronously`).to.not.throw();
          try {
            await returned;
          } catch (err) {
            expect(fieldOf(err), `${name}: ${String(err)}`).to.be.a('string');
            expect(store.total() + cache.total(), `${name}: store and cache calls for refused input`).to.equal(0);
          }
        }),
        { numRuns: Math.ceil(RUNS[env().backend] / 3) },
      );
    }
  });

  it('random corrupt cache contents under the chain over HTTP: a corrupt entry is answered from the store exactly as a clean cache would be, never a 500 or internal text', async function () {
    this.timeout(180_000);
    const { core } = env();
    const junk = fc.oneof(
      fc.string({ maxLength: 24 }),
      fc.constantFrom('', '-', '-0', '1e9', '0x1', ' 1', '1.5', '9007199254740992', 'active|x', '\u0000', 'NaN', '{x}'),
    );
    const edit = fc.oneof(
      fc.record({ op: fc.constant('set' as const), field: fc.nat(), value: junk }),
      fc.record({ op: fc.constant('drop' as const), field: fc.nat() }),
      fc.record({ op: fc.constant('add' as const), name: fc.string({ minLength: 1, maxLength: 4 }), value: junk }),
    );
    const scenario = fc.record({
      mode: fc.constantFrom('balance' as const, 'subscription' as const),
      balance: fc.constantFrom('0', '5'),
      spent: fc.constantFrom('0.5', '1.5'),
      // Per cached entry of the user, the edits made to it (none: left intact). Corrupt RPM
      // counters are the cache contract's (they restart, so they change the count by design).
      edits: fc.array(fc.array(edit, { maxLength: 3 }), { minLength: 5, maxLength: 5 }),
    });
    let n = 0;
    let allMisses = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async ({ mode, balance, spent, edits }) => {
        const { store, cache, keys, raw } = env();
        const userId = env().userId(`corrupt${n++}`);
        const group = mode === 'subscription' ? 'g-sub' : 'g-std';
        await core.admin.setBalance(userId, balance);
        await core.admin.setPlatformQuota(userId, 'openai', { dailyLimitUsd: '1' });
        await core.admin.setRpmOverride(userId, group, 50);
        if (mode === 'subscription') await core.admin.upsertSubscription({ userId, groupId: group, expiresAt: Date.now() + 86_400_000 * 365 * 20 });
        const subject: BillingSubject = {
          user: { id: userId, rpmLimit: 100 },
          apiKey: { id: 'k1', rateLimit5h: '1' },
          group: { id: group, billingType: mode === 'subscription' ? 'subscription' : 'standard', dailyLimitUsd: '1', rpmLimit: 100 },
          subscription: mode === 'subscription' ? { id: `s-${userId}` } : null,
          platform: 'openai',
        };
        await core.settle({ requestId: `spent-${userId}`, subject, costUsd: spent });
        const app = env().app({ subject });
        const answer = async () => {
          const res = await request(app.callback()).post('/v1/chat/completions');
          expect([200, 403, 429], `status ${res.status} ${res.text.slice(0, 200)}`).to.include(res.status);
          expect(res.text).to.not.match(INTERNAL);
          return [res.status, res.body.error?.code ?? null];
        };
        const clean = await answer();
        await quiet(() => store.total() + cache.total());

        const refs: CacheEntityRef[] = [
          { kind: 'balance', userId },
          { kind: 'subscription', userId, groupId: group },
          { kind: 'apiKeyWindows', userId, apiKeyId: 'k1' },
          { kind: 'platformQuota', userId, platform: 'openai' },
          { kind: 'rpmOverride', userId, groupId: group },
        ];
        let wellFormed = false;
        for (const [i, ref] of refs.entries()) {
          const key = keys.entity(ref);
          const stored = await raw.read(key);
          if (stored === null || edits[i]!.length === 0) continue;
          const hash = { ...stored };
          const fields = Object.keys(stored);
          for (const e of edits[i]!) {
            if (e.op === 'add') hash[e.name] = e.value;
            else if (e.op === 'set') hash[fields[e.field % fields.length]!] = e.value;
            else delete hash[fields[e.field % fields.length]!];
          }
          await raw.write(key, hash);
          // Edits may also leave a well-formed entry with other values, which no cache can tell from the truth.
          if (inspectEntry(ref.kind, hash).live !== null) wellFormed = true;
        }
        store.reset();
        const corrupted = await answer();
        expect(store.count('settle') + store.count('settleBatch'), 'store writes').to.equal(0);
        if (!wellFormed) {
          allMisses++;
          expect(corrupted, 'answer over corrupt entries').to.deep.equal(clean);
        }
        // Whatever was planted, dropping the user's entries brings back the clean answer.
        await Promise.all([
          core.invalidateBalance(userId),
          core.invalidateSubscription(userId, group),
          core.invalidateApiKeyWindows(userId, 'k1'),
          core.invalidatePlatformQuota(userId, 'openai'),
          core.invalidateRpmOverride(userId, group),
        ]);
        expect(await answer(), 'answer after invalidation').to.deep.equal(clean);
      }),
      { numRuns: Math.ceil(RUNS[env().backend] / 2) },
    );
    console.log(`      ${n} random corruptions: ${allMisses} read as misses and answered as on a clean cache`);
    expect(allMisses).to.be.greaterThan(0);
  });
});

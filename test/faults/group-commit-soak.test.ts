// Group-commit soak (docs/group-commit.md): 100,000 settlements at 200 in flight over 1,000 users, with
// repeated ids (10 %), conflicting repeats (1 %), missing accounts (0.5 %), random invalidations and
// PostgreSQL cut for 2 s in the middle. Afterwards every row equals initial − Σ distinct costs, exactly
// the distinct usage rows exist, each conflict and missing target got its own error, and the cache
// equals the store. Then two cores on separate connection pools settle on the same hot users at once.
import { expect } from 'chai';
import { SettlementTargetMissingError } from '../../lib/store/store-errors.js';
import type { SettleRequest } from '../../lib/settlement.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { createBillingCore } from '../../lib/billing-core.js';
import knexFactory from 'knex';
import { DATABASE_URL } from '../helpers/services.js';
import { createFaultEnv, report, sleep, type FaultEnv } from './fault-env.js';
import { Ledger, expectCacheEqualsStore, expectStoreExact, makeUsers, randomCostUnits, seedUsers, seededRandom, subjectOf } from './workload.js';

/** FAULTS_GC_SOAK_SETTLEMENTS shortens the run while working on it; the suite's figure is 100,000. */
const SETTLEMENTS = Number(process.env.FAULTS_GC_SOAK_SETTLEMENTS ?? 100_000);
const IN_FLIGHT = 200;
const SEED = Number(process.env.FAULTS_SEED ?? 20261203);

describe('faults: group-commit soak', function () {
  this.timeout(600_000);
  let env: FaultEnv;

  before(async function () {
    env = await createFaultEnv(this);
  });

  after(async () => {
    await env?.cleanup();
  });

  it(`${SETTLEMENTS} settlements at ${IN_FLIGHT} in flight over 1,000 users, PostgreSQL cut 2 s: rows, usage rows, errors and cache exact`, async () => {
    const users = makeUsers(1000, 'gcsoak');
    const ghosts = makeUsers(20, 'gcghost'); // no account: every settlement of theirs fails alone
    await seedUsers(env.directStore, users);
    const core = env.makeCore();
    const random = seededRandom(SEED);
    const ledger = new Ledger();
    const done: SettleRequest[] = [];
    const counts = { settled: 0, repeats: 0, duplicates: 0, conflicts: 0, conflictErrors: 0, missing: 0, missingErrors: 0, invalidations: 0, otherErrors: 0 };
    let next = 0;
    let started = 0;
    let cutAtMs = 0;
    const startedAt = performance.now();

    const one = async (): Promise<void> => {
      const pick = random();
      if (pick < 0.005) {
        counts.missing++;
        const ghost = ghosts[Math.floor(random() * ghosts.length)]!;
        const err = await core.settle({ requestId: `gcm-${next++}`, subject: subjectOf(ghost), costUsd: '0.001' }).then(
          () => null,
          (e: unknown) => e,
        );
        if (err instanceof SettlementTargetMissingError) counts.missingErrors++;
        else counts.otherErrors++;
        return;
      }
      if (pick < 0.015 && done.length > 0) {
        counts.conflicts++;
        const earlier = done[Math.floor(random() * done.length)]!;
        const err = await core.settle({ ...earlier, costUsd: '0.5' }).then(
          () => null,
          (e: unknown) => e,
        );
        if ((err as { code?: string } | null)?.code === 'SETTLEMENT_CONFLICT') counts.conflictErrors++;
        else counts.otherErrors++;
        return;
      }
      if (pick < 0.115 && done.length > 0) {
        counts.repeats++;
        const receipt = await core.settle(done[Math.floor(random() * done.length)]!);
        if (receipt.duplicate) counts.duplicates++;
        return;
      }
      if (pick < 0.125) {
        counts.invalidations++;
        const user = users[Math.floor(random() * users.length)]!;
        await (random() < 0.5 ? core.invalidateBalance(user.id) : core.invalidateApiKeyWindows(user.id, user.keyId));
      }
      const user = users[Math.floor(random() * users.length)]!;
      const units = randomCostUnits(random);
      const request: SettleRequest = { requestId: `gc-${next++}`, subject: subjectOf(user), costUsd: `0.${units.toString().padStart(8, '0')}` };
      ledger.record(request.requestId, user.id, units);
      await core.settle(request);
      counts.settled++;
      done.push(request);
    };

    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (started < SETTLEMENTS) {
          started++;
          if (started === Math.floor(SETTLEMENTS / 2)) {
            cutAtMs = performance.now() - startedAt;
            void env.pgProxy
              .cut()
              .then(() => sleep(2000))
              .then(() => env.pgProxy.restore());
          }
          await one();
        }
      }),
    );
    const elapsedS = (performance.now() - startedAt) / 1000;
    await core.close();
    report(
      `${SETTLEMENTS} settlements in ${elapsedS.toFixed(1)} s (${Math.round(SETTLEMENTS / elapsedS)}/s incl. a 2 s cut at ${(cutAtMs / 1000).toFixed(1)} s): ` +
        `${counts.settled} new, ${counts.repeats} repeats (${counts.duplicates} duplicates), ${counts.conflicts} conflicting repeats, ${counts.missing} missing accounts, ${counts.invalidations} invalidations`,
    );
    expect(counts.otherErrors).to.equal(0, 'no error but the expected ones');
    expect(counts.conflictErrors).to.equal(counts.conflicts, 'every conflicting repeat got SETTLEMENT_CONFLICT');
    expect(counts.missingErrors).to.equal(counts.missing, 'every missing account got its error');
    expect(counts.duplicates).to.equal(counts.repeats, 'every repeat of a stored settlement is its duplicate');
    await expectStoreExact(env.directKnex, env.directStore, users, ledger);
    const [ghostRows] = (await env
      .directKnex('billing_usage_log')
      .whereIn(
        'user_id',
        ghosts.map((g) => g.id),
      )
      .count({ n: '*' })) as [{ n: string }];
    expect(Number(ghostRows!.n)).to.equal(0, 'a failed settlement leaves no usage row');
    const { hits } = await expectCacheEqualsStore(env.directCache, env.directStore, users, false);
    report(`store exact for 1,000 users; ${hits} cached entries equal the store`);
  });

  it('two cores on separate connection pools settling on the same 5 hot users for 10 s: no deadlock escapes, every balance exact', async () => {
    const users = makeUsers(5, 'gcpair');
    await seedUsers(env.directStore, users);
    const pools = [0, 1].map(() => knexFactory({ client: 'pg', connection: DATABASE_URL, searchPath: [env.schema], pool: { min: 0, max: 6 } }));
    const cores = pools.map((knex) => createBillingCore({ store: new KnexBillingStore(knex) }));
    const ledger = new Ledger();
    let failures = 0;
    let next = 0;
    const deadline = performance.now() + 10_000;
    const random = seededRandom(SEED + 1);
    try {
      await Promise.all(
        cores.flatMap((core, c) =>
          Array.from({ length: 50 }, async () => {
            while (performance.now() < deadline) {
              const user = users[Math.floor(random() * users.length)]!;
              const units = randomCostUnits(random);
              const requestId = `pair-${c}-${next++}`;
              ledger.record(requestId, user.id, units);
              await core.settle({ requestId, subject: subjectOf(user), costUsd: `0.${units.toString().padStart(8, '0')}` }).catch(() => void failures++);
            }
          }),
        ),
      );
    } finally {
      await Promise.all(cores.map((core) => core.close()));
      await Promise.all(pools.map((knex) => knex.destroy()));
    }
    report(`two cores, 10 s on 5 hot users: ${ledger.size} settlements, ${failures} failed`);
    expect(failures).to.equal(0);
    await expectStoreExact(env.directKnex, env.directStore, users, ledger);
  });
});

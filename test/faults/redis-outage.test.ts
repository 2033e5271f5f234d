// Redis cut or black-holed under steady HTTP load: requests keep being served from the store (quota,
// key windows and RPM failing open), every settlement lands exactly once, and the cache converges after.
import { expect } from 'chai';
import { TABLES } from '../../lib/store/tables.js';
import { CACHE_CALLS_PER_REQUEST, COMMAND_TIMEOUT_MS, createFaultEnv, recordingLogger, report, type FaultEnv } from './fault-env.js';
import { reportPhases, runFaultUnderLoad, type ScenarioResult } from './load-scenario.js';
import { expectCacheEqualsStore, expectStoreExact, makeUsers, seedUsers, subjectOf, type FaultUser } from './workload.js';

describe('faults: Redis outage under load', function () {
  this.timeout(60_000);
  let env: FaultEnv;

  before(async function () {
    env = await createFaultEnv(this);
  });

  after(async () => {
    await env?.cleanup();
  });

  /** The store holds each settlement made during the fault exactly once, and every account adds up. */
  async function expectSettledExactlyOnce(result: ScenarioResult, users: readonly FaultUser[]): Promise<void> {
    const duringFault = result.ledger.madeBetween(result.faultAt, result.restoredAt);
    expect(duringFault.length, 'settlements made during the fault').to.be.greaterThan(100);
    const rows = (await env.directKnex(TABLES.usageLog).whereIn('request_id', duringFault).count({ n: '*' })) as [{ n: string | number }];
    expect(Number(rows[0].n), 'usage rows of the settlements made during the fault').to.equal(duringFault.length);
    await expectStoreExact(env.directKnex, env.directStore, users, result.ledger);
    report(`store: ${duringFault.length} settlements made during the fault, each stored exactly once; all ${users.length} accounts exact`);
  }

  /** After close() has drained: what is cached equals the store; after a refill pass every entry is cached and equal. */
  async function expectCacheConverged(users: readonly FaultUser[]): Promise<void> {
    const drained = await expectCacheEqualsStore(env.directCache, env.directStore, users, false);
    const refill = env.makeCore();
    for (const user of users) await refill.check(subjectOf(user));
    await refill.close();
    const refilled = await expectCacheEqualsStore(env.directCache, env.directStore, users, true);
    report(
      `cache after drain: ${drained.hits} entries equal to the store, ${drained.misses} invalidated; after one refill pass ${refilled.hits}/${refilled.hits} equal`,
    );
  }

  it('Redis cut for 5 s: every request is served from the store, the cache is back within 2 s, settlements land exactly once', async () => {
    const users = makeUsers(50, 'cut');
    await seedUsers(env.directStore, users);
    const logger = recordingLogger();
    const core = env.makeCore({ logger });
    const errorsBefore = env.redisErrors();

    const result = await runFaultUnderLoad(env, core, users, { fault: () => env.redisProxy.cut(), faultMs: 5000, seed: 0xc07 });
    await core.close();
    reportPhases(result, 'Redis cut 5 s');
    report(
      `Redis client errors during the run: ${env.redisErrors() - errorsBefore}; core warnings: ${logger.entries.filter((e) => e.level === 'warn').length}`,
    );

    const all = [...result.before, ...result.during, ...result.after];
    // A cache outage gives no 5xx (docs/behaviour.md#fail-open-and-fail-closed): balance comes from the store, the rest fails open.
    expect(
      all.filter((s) => s.status !== 200).map((s) => s.status),
      'non-200 answers',
    ).to.deep.equal([]);
    // Once the client has seen the connection drop (a few ms), nothing waits for Redis any more.
    const settledIn = result.during.filter((s) => s.startedMs > result.faultAt + 50);
    expect(settledIn.length, 'requests sent during the cut').to.be.greaterThan(200);
    expect(
      settledIn.filter((s) => s.balanceSource !== 'store'),
      'balance reads that did not come from the store',
    ).to.deep.equal([]);
    expect(
      settledIn.filter((s) => s.rpm !== 'failed_open'),
      'RPM checks that did not fail open',
    ).to.deep.equal([]);
    expect(result.cacheBackAfterMs, 'ms from restore until the cache is read again').to.be.below(2000);
    expect(result.receipts.every((r) => !r.duplicate)).to.equal(true);

    await expectSettledExactlyOnce(result, users);
    await expectCacheConverged(users);
  });

  it('Redis black-holed for 3 s: each cache call gives up after commandTimeout, the client reconnects, nothing is lost', async () => {
    const users = makeUsers(50, 'hole');
    await seedUsers(env.directStore, users);
    const core = env.makeCore();
    const accepted = env.redisProxy.accepted;

    const result = await runFaultUnderLoad(env, core, users, { fault: () => env.redisProxy.blackhole(), faultMs: 3000, seed: 0xb1ac });
    await core.close();
    reportPhases(result, 'Redis black-holed 3 s');
    report(
      `Redis connections opened through the proxy during the run: ${env.redisProxy.accepted - accepted} (socketTimeout drops a silent one and reconnects)`,
    );

    const all = [...result.before, ...result.during, ...result.after];
    expect(
      all.filter((s) => s.status !== 200).map((s) => s.status),
      'non-200 answers',
    ).to.deep.equal([]);
    // Each of the request's two cache round trips gives up after commandTimeout; the rest is the
    // store read and HTTP on a shared 2-core machine. Without commandTimeout each would wait until
    // socketTimeout (1 s) drops the silent connection, or forever without that either.
    const bound = CACHE_CALLS_PER_REQUEST * COMMAND_TIMEOUT_MS + 500;
    const slowest = Math.max(...result.during.map((s) => s.latencyMs));
    report(
      `slowest request while black-holed: ${slowest.toFixed(0)} ms (bound ${bound} ms = ${CACHE_CALLS_PER_REQUEST} × commandTimeout ${COMMAND_TIMEOUT_MS} ms + 500 ms for the store read and HTTP on a busy machine)`,
    );
    expect(slowest, 'slowest request while black-holed, ms').to.be.below(bound);
    expect(result.cacheBackAfterMs, 'ms from restore until the cache is read again').to.be.below(2000);

    await expectSettledExactlyOnce(result, users);
    await expectCacheConverged(users);
  });
});

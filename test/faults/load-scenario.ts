// One fault under steady load: warm up, inject the fault for a while, restore, wait until the cache is
// read again, settle everything, and hand back the samples of each phase for the test to judge.
import type { BillingCore } from '../../lib/billing-core.js';
import type { SettlementReceipt } from '../../lib/settlement.js';
import type { FaultEnv } from './fault-env.js';
import { report, latencySummary, sleep, waitFor } from './fault-env.js';
import { runLoad, startGateway, type Sample } from './gateway-load.js';
import { Ledger, seededRandom, type FaultUser } from './workload.js';

export interface ScenarioOptions {
  /** Injects the fault (e.g. () => env.redisProxy.cut()). */
  fault: () => Promise<void>;
  faultMs: number;
  seed: number;
  concurrency?: number;
  ratePerSec?: number;
  warmupMs?: number;
  /** Load kept up after the cache is read again. */
  afterMs?: number;
  /** How long after restore the cache may take to serve again before the run fails. */
  recoveryLimitMs?: number;
}

export interface ScenarioResult {
  before: Sample[];
  during: Sample[];
  after: Sample[];
  faultAt: number;
  restoredAt: number;
  /** From restore to the end of the first request (sent after restore) whose balance came from the cache. */
  cacheBackAfterMs: number;
  ledger: Ledger;
  receipts: SettlementReceipt[];
}

export async function runFaultUnderLoad(env: FaultEnv, core: BillingCore, users: readonly FaultUser[], options: ScenarioOptions): Promise<ScenarioResult> {
  const { fault, faultMs, seed, concurrency = 8, ratePerSec = 200, warmupMs = 1000, afterMs = 500, recoveryLimitMs = 4000 } = options;
  const random = seededRandom(seed);
  const ledger = new Ledger();
  const gateway = await startGateway(core, users, ledger, random);
  const samples: Sample[] = [];
  let stopped = false;
  const load = runLoad({ port: gateway.port, userCount: users.length, concurrency, ratePerSec, random, stop: () => stopped, samples });
  let faultAt = Number.NaN;
  let restoredAt = Number.NaN;
  try {
    await sleep(warmupMs);
    faultAt = performance.now();
    await fault();
    await sleep(faultMs);
    await env.redisProxy.restore();
    await env.pgProxy.restore();
    restoredAt = performance.now();
    await waitFor(
      'a request sent after restore to read its balance from the cache',
      () => samples.some((s) => s.startedMs >= restoredAt && s.balanceSource === 'cache'),
      recoveryLimitMs,
    );
    await sleep(afterMs);
  } finally {
    stopped = true;
    await load;
    await gateway.close();
  }
  const back = samples.filter((s) => s.startedMs >= restoredAt && s.balanceSource === 'cache').map((s) => s.startedMs + s.latencyMs);
  const receipts = await Promise.all(gateway.settlements);
  return {
    before: samples.filter((s) => s.startedMs < faultAt),
    during: samples.filter((s) => s.startedMs >= faultAt && s.startedMs < restoredAt),
    after: samples.filter((s) => s.startedMs >= restoredAt),
    faultAt,
    restoredAt,
    cacheBackAfterMs: Math.min(...back) - restoredAt,
    ledger,
    receipts,
  };
}

/** Prints the figures of each phase under the test's title. */
export function reportPhases(result: ScenarioResult, faultName: string): void {
  const statuses = (samples: Sample[]) => {
    const counts = new Map<number, number>();
    for (const s of samples) counts.set(s.status, (counts.get(s.status) ?? 0) + 1);
    return [...counts].map(([status, n]) => `${status}×${n}`).join(' ');
  };
  const fromStore = result.during.filter((s) => s.balanceSource === 'store').length;
  const rpmOpen = result.during.filter((s) => s.rpm === 'failed_open').length;
  report(`before: ${latencySummary(result.before.map((s) => s.latencyMs))}; ${statuses(result.before)}`);
  report(
    `${faultName}: ${latencySummary(result.during.map((s) => s.latencyMs))}; ${statuses(result.during)}; balance from store ${fromStore}/${result.during.length}, rpm failed open ${rpmOpen}`,
  );
  report(
    `after restore: ${latencySummary(result.after.map((s) => s.latencyMs))}; ${statuses(result.after)}; cache read again ${result.cacheBackAfterMs.toFixed(0)} ms after restore`,
  );
  report(`settlements: ${result.ledger.size} (${result.receipts.filter((r) => r.duplicate).length} duplicates)`);
}

// The parts a BillingCore is wired from, shared by the per-request checks, settlement and admin writes.
import type { CircuitBreaker } from './breaker.js';
import type { CacheSync } from './cache-sync.js';
import type { GroupCommit } from './group-commit.js';
import type { LeaseRenewer } from './lease-renewer.js';
import type { ResolvedCoreOptions } from './core-options.js';
import type { ThrottledLog } from './log.js';
import type { BillingMetricsRecorder } from './metrics.js';
import type { SingleFlight } from './single-flight.js';
import type { BillingCache, BillingStore, TimeContext } from './types.js';
import type { WriteQueue } from './write-queue.js';
import type { BackgroundTasks } from './background-tasks.js';

export interface CoreInternals {
  readonly options: ResolvedCoreOptions;
  readonly store: BillingStore;
  readonly cache: BillingCache | undefined;
  readonly breaker: CircuitBreaker;
  /** One single-flight for every store load, keyed `<kind>:<ids>`. */
  readonly loads: SingleFlight<string, unknown>;
  readonly queue: WriteQueue;
  readonly cacheSync: CacheSync;
  /** Every settlement goes to the store through here. */
  readonly groupCommit: GroupCommit;
  readonly background: BackgroundTasks;
  readonly warnings: ThrottledLog;
  readonly metrics: BillingMetricsRecorder;
  /**
   * Whether this request's checks are timed: only with metrics configured, and then one request in
   * CHECK_TIMING_SAMPLE (clock reads and histogram updates for seven checks would cost more than
   * the rest of the metrics together; a sample describes the latency distribution as well).
   */
  sampleTiming(): boolean;
  /** Reservations this process holds and has not handed to a settlement or released, and the concurrency slots among them. */
  readonly openLeases: { count: number; slots: number };
  /** Renews the holds of requests still in flight. */
  readonly renewer: LeaseRenewer;
  time(): TimeContext;
}

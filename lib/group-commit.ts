// Group commit (docs/group-commit.md): settlements that arrive while the store is busy with a
// transaction wait and go together in the next one. A lone settlement on an idle store goes at once,
// alone; each resolves with its own outcome, only after its transaction committed.
import { parseOptions, v } from './options.js';
import type { BillingStore, SettleOutcome, SettlementInput, SettlementResult } from './types.js';

export interface SettlementBatchingOptions {
  /** Most settlements in one transaction; 1 turns batching off. Default 100. */
  maxBatchSize?: number;
  /** Transactions in flight at once, each with its own connection. Default 2. */
  maxBatchesInFlight?: number;
}

export const SETTLEMENT_BATCHING_DEFAULTS: Readonly<Required<SettlementBatchingOptions>> = Object.freeze({ maxBatchSize: 100, maxBatchesInFlight: 2 });

/** What the metrics hear about each batch. */
export interface BatchObserver {
  batch(size: number, seconds: number): void;
}

interface Waiting {
  input: SettlementInput;
  resolve(result: SettlementResult): void;
  reject(error: unknown): void;
}

export class GroupCommit {
  readonly options: Readonly<Required<SettlementBatchingOptions>>;
  readonly #store: BillingStore;
  readonly #observer: BatchObserver;
  readonly #waiting: Waiting[] = [];
  #inFlight = 0;

  constructor(store: BillingStore, options: SettlementBatchingOptions | undefined, observer: BatchObserver) {
    this.options = parseOptions<Required<SettlementBatchingOptions>>('settlementBatching', options, SETTLEMENT_BATCHING_DEFAULTS, {
      maxBatchSize: v.positiveInt(1000),
      maxBatchesInFlight: v.positiveInt(64),
    });
    this.#store = store;
    this.#observer = observer;
  }

  /** Settlements waiting for a transaction. */
  get waiting(): number {
    return this.#waiting.length;
  }

  settle(input: SettlementInput): Promise<SettlementResult> {
    if (this.options.maxBatchSize === 1 || typeof this.#store.settleBatch !== 'function') return this.#store.settle(input);
    return new Promise<SettlementResult>((resolve, reject) => {
      this.#waiting.push({ input, resolve, reject });
      this.#next();
    });
  }

  /** Starts transactions while there is room: each takes everything waiting, up to the batch size. */
  #next(): void {
    while (this.#inFlight < this.options.maxBatchesInFlight && this.#waiting.length > 0) {
      const batch = this.#waiting.splice(0, this.options.maxBatchSize);
      this.#inFlight++;
      void this.#commit(batch).finally(() => {
        this.#inFlight--;
        this.#next();
      });
    }
  }

  async #commit(batch: Waiting[]): Promise<void> {
    const startedAt = performance.now();
    let outcomes: SettleOutcome[];
    try {
      // One alone takes the plain path: an idle store adds nothing to its latency.
      outcomes =
        batch.length === 1
          ? [
              await this.#store.settle(batch[0]!.input).then(
                (result): SettleOutcome => ({ ok: true, result }),
                (error: Error): SettleOutcome => ({ ok: false, error }),
              ),
            ]
          : await this.#store.settleBatch!(batch.map((w) => w.input));
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    this.#observer.batch(batch.length, (performance.now() - startedAt) / 1000);
    for (const [i, w] of batch.entries()) {
      const outcome = outcomes[i];
      if (outcome === undefined) w.reject(new Error('settleBatch returned fewer outcomes than settlements'));
      else if (outcome.ok) w.resolve(outcome.result);
      else w.reject(outcome.error);
    }
  }
}

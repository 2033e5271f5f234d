// Merges concurrent loads of one key into one detached load with its own timeout (docs/behaviour.md#balance, docs/behaviour.md#platform-quota).
import { parseOptions, v } from './options.js';

export interface SingleFlightOptions {
  /** Timeout of each load, in ms; its AbortSignal fires then and every waiter rejects. Default 3000. */
  timeoutMs?: number;
}

/** Every waiter of a load that did not settle within timeoutMs gets this. */
export class SingleFlightTimeoutError extends Error {
  override readonly name = 'SingleFlightTimeoutError';
}

/** A caller that abandoned its wait through its own signal gets this; `cause` is the signal's reason. */
export class AbortError extends Error {
  override readonly name = 'AbortError';
}

/**
 * What a load may do besides loading: `hold(work)` keeps its key taken until `work` settles (or the
 * load's timeout passes), though its waiters have their value already. A load that writes its result
 * to a cache asynchronously holds the key until the write lands, so a caller that missed the cache in
 * between joins this load instead of starting another.
 */
export type LoadHold = (work: Promise<unknown>) => void;

export class SingleFlight<K, V> {
  readonly timeoutMs: number;
  readonly #flights = new Map<K, Promise<V>>();
  /** Per flight not yet released (forgotten ones included), settling when it is: close() waits for them all. */
  readonly #unreleased = new Set<Promise<void>>();

  constructor(options: SingleFlightOptions = {}) {
    ({ timeoutMs: this.timeoutMs } = parseOptions<Required<SingleFlightOptions>>(
      'singleFlight',
      options,
      { timeoutMs: 3000 },
      {
        timeoutMs: v.positiveInt(),
      },
    ));
  }

  /**
   * One shared load per key. The load runs detached from every caller's cancellation: its own
   * AbortSignal fires only on its timeout (then every waiter rejects with SingleFlightTimeoutError).
   * A caller's `signal` abandons that caller's wait only (AbortError); the load and the other
   * waiters go on. A failed load reaches every waiter. The key is released when the load settles
   * and what it held settled (see LoadHold), or at its timeout, or by forget(key); the next call
   * after that starts a new load.
   */
  do(key: K, load: (signal: AbortSignal, hold: LoadHold) => Promise<V>, signal?: AbortSignal): Promise<V> {
    if (signal?.aborted) return Promise.reject(new AbortError('The wait was aborted', { cause: signal.reason }));
    const flight = this.#flights.get(key) ?? this.#start(key, load);
    return signal ? abandonable(flight, signal) : flight;
  }

  /**
   * Gives up the key now: the next call starts a new load. For a write to what the key loads — a
   * caller after it must not be handed a value read before it. The running load goes on for its
   * current waiters.
   */
  forget(key: K): void {
    this.#flights.delete(key);
  }

  /** Keys taken: a load in flight, or a settled one still holding work (see LoadHold). */
  get inFlight(): number {
    return this.#flights.size;
  }

  /** Resolves when every in-flight load and its held work has settled or timed out (bounded by timeoutMs; for close()). */
  async idle(): Promise<void> {
    // Loop: a load may start while we wait for the previous ones.
    while (this.#unreleased.size > 0) await Promise.all(this.#unreleased);
  }

  #start(key: K, load: (signal: AbortSignal, hold: LoadHold) => Promise<V>): Promise<V> {
    const controller = new AbortController();
    const held: Promise<unknown>[] = [];
    let timer: NodeJS.Timeout | undefined;
    let resolveReleased!: () => void;
    const released = new Promise<void>((resolve) => (resolveReleased = resolve));
    // Synchronous, and registered on the flight before any waiter: a caller that saw its value and
    // calls again starts a new load (unless something was held).
    const release = (): void => {
      clearTimeout(timer);
      this.#unreleased.delete(released);
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
      resolveReleased();
    };
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new SingleFlightTimeoutError(`single-flight load timed out after ${this.timeoutMs} ms`);
        controller.abort(err); // once the load settled, this cuts short only what it still holds
        reject(err);
        release();
      }, this.timeoutMs);
      // The timer alone must not keep a process alive.
      timer.unref();
    });
    let loaded: Promise<V>;
    try {
      loaded = load(controller.signal, (work) => void held.push(work));
    } catch (err) {
      loaded = Promise.reject(err);
    }
    const flight = Promise.race([loaded, timeout]);
    const settled = (): void => {
      if (held.length === 0) release();
      else void Promise.allSettled(held).then(release);
    };
    // Also handles the failure: every waiter may have abandoned its wait, it is never unhandled.
    flight.then(settled, settled);
    this.#flights.set(key, flight);
    this.#unreleased.add(released);
    return flight;
  }
}

/** The flight's outcome, unless `signal` aborts first; the listener is removed either way (no leak). */
function abandonable<V>(flight: Promise<V>, signal: AbortSignal): Promise<V> {
  return new Promise<V>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError('The wait was aborted', { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    flight.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

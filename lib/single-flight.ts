// Merges concurrent loads of one key into one detached load with its own timeout (SPEC §2.1, §2.3).
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

export class SingleFlight<K, V> {
  readonly timeoutMs: number;
  readonly #flights = new Map<K, Promise<V>>();

  constructor(options: SingleFlightOptions = {}) {
    ({ timeoutMs: this.timeoutMs } = parseOptions<Required<SingleFlightOptions>>('singleFlight', options, { timeoutMs: 3000 }, {
      timeoutMs: v.positiveInt(),
    }));
  }

  /**
   * One shared load per key. The load runs detached from every caller's cancellation: its own
   * AbortSignal fires only on its timeout (then every waiter rejects with SingleFlightTimeoutError).
   * A caller's `signal` abandons that caller's wait only (AbortError); the load and the other
   * waiters go on. A failed load reaches every waiter. The key is released when the load settles
   * or times out, so the next call after that starts a new load.
   */
  do(key: K, load: (signal: AbortSignal) => Promise<V>, signal?: AbortSignal): Promise<V> {
    if (signal?.aborted) return Promise.reject(new AbortError('The wait was aborted', { cause: signal.reason }));
    const flight = this.#flights.get(key) ?? this.#start(key, load);
    return signal ? abandonable(flight, signal) : flight;
  }

  /** Keys with a load in flight. */
  get inFlight(): number {
    return this.#flights.size;
  }

  /** Resolves when every in-flight load has settled or timed out (bounded by timeoutMs; for close()). */
  async idle(): Promise<void> {
    // Loop: a load may start while we wait for the previous ones.
    while (this.#flights.size > 0) await Promise.allSettled([...this.#flights.values()]);
  }

  #start(key: K, load: (signal: AbortSignal) => Promise<V>): Promise<V> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new SingleFlightTimeoutError(`single-flight load timed out after ${this.timeoutMs} ms`);
        controller.abort(err);
        reject(err);
      }, this.timeoutMs);
      // The timer alone must not keep a process alive.
      timer.unref();
    });
    let loaded: Promise<V>;
    try {
      loaded = load(controller.signal);
    } catch (err) {
      loaded = Promise.reject(err);
    }
    const flight: Promise<V> = Promise.race([loaded, timeout]).finally(() => {
      clearTimeout(timer);
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    });
    // Every waiter may have abandoned its wait; the flight's failure is theirs, never unhandled.
    flight.catch(() => {});
    this.#flights.set(key, flight);
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

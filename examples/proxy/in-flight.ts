// Tracks work that must finish before shutdown: open requests, streams still relaying, settlements still writing.

export class InFlightTracker {
  readonly #pending = new Set<Promise<unknown>>();

  get size(): number {
    return this.#pending.size;
  }

  /** Tracks the promise until it settles; returns it unchanged. */
  track<T>(promise: Promise<T>): Promise<T> {
    const tracked = promise.finally(() => this.#pending.delete(tracked));
    // The caller handles the outcome; this copy must not raise an unhandled rejection.
    tracked.catch(() => undefined);
    this.#pending.add(tracked);
    return promise;
  }

  /** Resolves once nothing is pending, including work that was added while waiting. */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }
}

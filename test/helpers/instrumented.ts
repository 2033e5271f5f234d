// Wraps a real store or cache to count the calls it receives and to make it fail on demand
// (fault injection for the behaviour matrix; the wrapped backend does the real work).
export interface Instrumented<T> {
  target: T;
  /** Calls per method since the last reset(). */
  calls: Map<string, number>;
  count(method: string): number;
  total(): number;
  reset(): void;
  /** While set, every call of these methods (or all, for '*') rejects with this error. */
  failWith(error: Error | null, methods?: string[] | '*'): void;
  /** While set, calls of these methods wait on this promise before running. */
  holdUntil(gate: Promise<unknown> | null, methods?: string[]): void;
  /** While set, calls of these methods run at once, but hand back their result (or error) only once this promise settles. */
  deliverAfter(gate: Promise<unknown> | null, methods?: string[]): void;
  /** Settles once the next call of `method` has returned (or thrown). */
  settled(method: string): Promise<void>;
}

export function instrument<T extends object>(real: T): Instrumented<T> {
  const calls = new Map<string, number>();
  let failure: { error: Error; methods: string[] | '*' } | null = null;
  let hold: { gate: Promise<unknown>; methods: string[] } | null = null;
  let delivery: { gate: Promise<unknown>; methods: string[] } | null = null;
  const watchers = new Map<string, (() => void)[]>();
  /** Runs `call`, then tells the watchers of `method`, then waits for the delivery gate if one applies. */
  const observe = async <R>(method: string, call: () => Promise<R>): Promise<R> => {
    const gate = delivery?.methods.includes(method) ? delivery.gate : null;
    const outcome = call();
    const notify = () => {
      const waiting = watchers.get(method) ?? [];
      watchers.delete(method);
      for (const resolve of waiting) resolve();
    };
    outcome.then(notify, notify);
    if (gate) await Promise.allSettled([outcome, gate]);
    return outcome;
  };
  const fails = (method: string) => failure !== null && (failure.methods === '*' || failure.methods.includes(method));
  const target = new Proxy(real, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      if (prop === 'readBatchCounting') {
        // A cache's batched read that may also apply the RPM hit: counted, held and failed as the
        // read ('readBatch'), and as an 'rpmHit' when it counted. A failure set on rpmHit alone
        // (a broken counter, working reads) lets the read through without counting, so the
        // request goes on to rpmHit and meets the failure there.
        return async (request: unknown, countIf: (last: unknown) => unknown) => {
          calls.set('readBatch', (calls.get('readBatch') ?? 0) + 1);
          if (hold?.methods.includes('readBatch')) await hold.gate;
          if (fails('readBatch')) throw failure!.error;
          const result = await observe('readBatch', () =>
            (value as (...a: unknown[]) => Promise<{ rpm?: unknown }>).apply(obj, [request, fails('rpmHit') ? () => null : countIf]),
          );
          if (result.rpm !== undefined) calls.set('rpmHit', (calls.get('rpmHit') ?? 0) + 1);
          return result;
        };
      }
      return async (...args: unknown[]) => {
        calls.set(prop, (calls.get(prop) ?? 0) + 1);
        if (hold?.methods.includes(prop)) await hold.gate;
        if (fails(prop)) throw failure!.error;
        return observe(prop, async () => (value as (...a: unknown[]) => unknown).apply(obj, args));
      };
    },
  });
  return {
    target,
    calls,
    count: (method) => calls.get(method) ?? 0,
    total: () => [...calls.values()].reduce((a, b) => a + b, 0),
    reset: () => calls.clear(),
    failWith(error, methods = '*') {
      failure = error ? { error, methods } : null;
    },
    holdUntil(gate, methods = []) {
      hold = gate ? { gate, methods } : null;
    },
    deliverAfter(gate, methods = []) {
      delivery = gate ? { gate, methods } : null;
    },
    settled(method) {
      return new Promise<void>((resolve) => watchers.set(method, [...(watchers.get(method) ?? []), resolve]));
    },
  };
}

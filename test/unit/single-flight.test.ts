// Unit tests for lib/single-flight.ts: merged loads, detached cancellation, failures, timeouts.
import { expect } from 'chai';
import { AbortError, SingleFlight, SingleFlightTimeoutError } from '../../lib/single-flight.js';
import { BillingConfigError } from '../../lib/options.js';
import { failOnUnhandledRejections } from '../helpers/unhandled-rejections.js';

/** A promise settled from outside, to hold a load open while the test arranges its callers. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise callback run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('SingleFlight', () => {
  failOnUnhandledRejections();

  it('16 concurrent callers share one load and all get its value', async () => {
    const flight = new SingleFlight<string, number>({ timeoutMs: 3000 });
    const gate = deferred<number>();
    let loads = 0;
    const load = () => {
      loads++;
      return gate.promise;
    };
    const callers = Array.from({ length: 16 }, () => flight.do('user:1', load));
    expect(flight.inFlight).to.equal(1);
    gate.resolve(42);
    expect(await Promise.all(callers)).to.deep.equal(Array(16).fill(42));
    expect(loads).to.equal(1);
    expect(flight.inFlight).to.equal(0);
  });

  it('different keys load independently', async () => {
    const flight = new SingleFlight<string, string>();
    const [a, b] = await Promise.all([flight.do('a', async () => 'A'), flight.do('b', async () => 'B')]);
    expect([a, b]).to.deep.equal(['A', 'B']);
  });

  it('an aborted caller rejects with AbortError while the load and the others go on', async () => {
    const flight = new SingleFlight<string, number>({ timeoutMs: 3000 });
    const gate = deferred<number>();
    let loadSignal: AbortSignal | undefined;
    const load = (signal: AbortSignal) => {
      loadSignal = signal;
      return gate.promise;
    };
    const controller = new AbortController();
    const leaving = flight.do('k', load, controller.signal);
    const staying = flight.do('k', load, new AbortController().signal);
    const plain = flight.do('k', load);
    controller.abort(new Error('client went away'));
    const err = await leaving.catch((e: unknown) => e);
    expect(err).to.be.instanceOf(AbortError);
    expect((err as Error).name).to.equal('AbortError');
    expect(loadSignal?.aborted).to.equal(false);
    gate.resolve(7);
    expect(await staying).to.equal(7);
    expect(await plain).to.equal(7);
  });

  it('a caller whose signal is already aborted rejects without starting a load', async () => {
    const flight = new SingleFlight<string, number>();
    let loads = 0;
    const err = await flight.do('k', async () => ++loads, AbortSignal.abort()).catch((e: unknown) => e);
    expect((err as Error).name).to.equal('AbortError');
    expect(loads).to.equal(0);
    expect(flight.inFlight).to.equal(0);
  });

  it('when every caller abandons the wait the load still completes, and its failure is not unhandled', async () => {
    const flight = new SingleFlight<string, number>();
    const gate = deferred<number>();
    const controller = new AbortController();
    const waiting = flight.do('k', () => gate.promise, controller.signal);
    controller.abort();
    expect(((await waiting.catch((e: unknown) => e)) as Error).name).to.equal('AbortError');
    expect(flight.inFlight).to.equal(1);
    gate.reject(new Error('store down'));
    await flight.idle();
    expect(flight.inFlight).to.equal(0);
  });

  it('a failed load reaches every waiter', async () => {
    const flight = new SingleFlight<string, number>();
    const gate = deferred<number>();
    const callers = Array.from({ length: 5 }, (_, i) => flight.do('k', () => gate.promise, i % 2 ? new AbortController().signal : undefined));
    const failure = new Error('connection refused');
    gate.reject(failure);
    const results = await Promise.allSettled(callers);
    expect(results.map((r) => (r.status === 'rejected' ? r.reason : r.value))).to.deep.equal(Array(5).fill(failure));
  });

  it('a load that throws synchronously is a failed load, not a throw from do()', async () => {
    const flight = new SingleFlight<string, number>();
    const p = flight.do('k', () => {
      throw new Error('sync boom');
    });
    expect(((await p.catch((e: unknown) => e)) as Error).message).to.equal('sync boom');
    expect(flight.inFlight).to.equal(0);
  });

  it('a load past its timeout rejects every waiter with SingleFlightTimeoutError and aborts its signal', async () => {
    const flight = new SingleFlight<string, number>({ timeoutMs: 20 });
    let loadSignal: AbortSignal | undefined;
    const load = (signal: AbortSignal) => {
      loadSignal = signal;
      return new Promise<number>(() => {});
    };
    const callers = [flight.do('k', load), flight.do('k', load, new AbortController().signal)];
    const results = await Promise.allSettled(callers);
    for (const r of results) {
      expect(r.status).to.equal('rejected');
      expect((r as PromiseRejectedResult).reason).to.be.instanceOf(SingleFlightTimeoutError);
    }
    expect(loadSignal?.aborted).to.equal(true);
    expect(loadSignal?.reason).to.be.instanceOf(SingleFlightTimeoutError);
    expect(flight.inFlight).to.equal(0);
  });

  it('a load that rejects after its timeout is not an unhandled rejection', async () => {
    const flight = new SingleFlight<string, number>({ timeoutMs: 10 });
    const late = (signal: AbortSignal) =>
      new Promise<number>((_, reject) => signal.addEventListener('abort', () => setTimeout(() => reject(new Error('late')), 5)));
    expect(await flight.do('k', late).catch((e: unknown) => e)).to.be.instanceOf(SingleFlightTimeoutError);
    await new Promise((resolve) => setTimeout(resolve, 20));
  });

  it('a call after the load settled starts a new load', async () => {
    const flight = new SingleFlight<string, number>();
    let loads = 0;
    const load = async () => ++loads;
    expect(await flight.do('k', load)).to.equal(1);
    expect(await flight.do('k', load)).to.equal(2);
    await flight
      .do('k', async () => {
        throw new Error('x');
      })
      .catch(() => {});
    expect(await flight.do('k', load)).to.equal(3);
  });

  it('idle() resolves once every in-flight load has settled, including loads started meanwhile', async () => {
    const flight = new SingleFlight<string, number>();
    const first = deferred<number>();
    const second = deferred<number>();
    void flight.do('a', () => first.promise);
    let idle = false;
    const idling = flight.idle().then(() => {
      idle = true;
    });
    void flight.do('b', () => second.promise);
    first.resolve(1);
    await flush();
    expect(idle).to.equal(false);
    second.resolve(2);
    await idling;
    expect(flight.inFlight).to.equal(0);
    await flight.idle();
  });

  it('a load that holds work keeps its key until the work settles: callers meanwhile join it', async () => {
    const flight = new SingleFlight<string, number>();
    const fill = deferred<void>();
    let loads = 0;
    const load = async (_signal: AbortSignal, hold: (work: Promise<unknown>) => void) => {
      hold(fill.promise);
      return ++loads;
    };
    expect(await flight.do('k', load)).to.equal(1);
    expect(flight.inFlight, 'held after its value was delivered').to.equal(1);
    expect(await flight.do('k', load), 'joins the held load').to.equal(1);
    fill.resolve();
    await flush();
    expect(flight.inFlight).to.equal(0);
    expect(await flight.do('k', async () => ++loads)).to.equal(2);
  });

  it('held work that fails releases the key too; held work that hangs is cut at the timeout', async () => {
    const flight = new SingleFlight<string, number>({ timeoutMs: 30 });
    const failing = deferred<void>();
    await flight.do('a', async (_signal, hold) => {
      hold(failing.promise);
      return 1;
    });
    failing.reject(new Error('cache write failed'));
    await flush();
    expect(flight.inFlight).to.equal(0);
    let aborted = false;
    await flight.do('b', async (signal, hold) => {
      hold(new Promise(() => {}));
      signal.addEventListener('abort', () => (aborted = true));
      return 2;
    });
    expect(flight.inFlight).to.equal(1);
    await flight.idle(); // bounded by the timeout, not by the hung work
    expect(flight.inFlight).to.equal(0);
    expect(aborted, 'the hung work is told through the signal').to.equal(true);
  });

  it('forget() gives up the key: the next call loads again, the running load still serves its waiters', async () => {
    const flight = new SingleFlight<string, string>();
    const before = deferred<string>();
    const waiting = flight.do('k', () => before.promise);
    flight.forget('k');
    expect(flight.inFlight).to.equal(0);
    expect(await flight.do('k', async () => 'after the write')).to.equal('after the write');
    let idle = false;
    const idling = flight.idle().then(() => (idle = true));
    await flush();
    expect(idle, 'idle() still waits for the forgotten load').to.equal(false);
    before.resolve('before the write');
    expect(await waiting).to.equal('before the write');
    await idling;
  });

  it('rejects a bad timeout naming singleFlight.timeoutMs', () => {
    expect(() => new SingleFlight({ timeoutMs: 0 })).to.throw(BillingConfigError, 'singleFlight.timeoutMs must be a positive integer, got 0');
  });
});

// Unit tests for lib/write-queue.ts: critical writes never lost nor stuck, throttled drops, drain, timeouts.
import { expect } from 'chai';
import { ManualClock } from '../../lib/clock.js';
import { BillingConfigError } from '../../lib/options.js';
import type { BillingLogger } from '../../lib/types.js';
import { WriteQueue, WriteTaskTimeoutError, type WriteQueueOptions } from '../../lib/write-queue.js';
import { failOnUnhandledRejections } from '../helpers/unhandled-rejections.js';

interface Line {
  level: string;
  obj: Record<string, unknown>;
  msg: string | undefined;
}

function setup(options?: WriteQueueOptions) {
  const clock = new ManualClock(5_000_000);
  const lines: Line[] = [];
  const record = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  const logger: BillingLogger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') };
  const queue = new WriteQueue(options, { clock, logger });
  const advance = (ms: number) => clock.advance(ms);
  return { queue, lines, advance };
}

/** Tasks that hold their worker until release(); `started` counts how many began. */
function blockers() {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const state = { started: 0, finished: 0 };
  const task = async () => {
    state.started++;
    await gate;
    state.finished++;
  };
  return { task, state, release };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('WriteQueue', () => {
  failOnUnhandledRejections();

  it('uses the documented defaults and names bad options', () => {
    expect(setup().queue.options).to.deep.equal({ capacity: 1000, workers: 10, taskTimeoutMs: 2000 });
    expect(() => setup({ capacity: 0 })).to.throw(BillingConfigError, 'writeQueue.capacity must be a positive integer, got 0');
    expect(() => setup({ workers: 2.5 })).to.throw(BillingConfigError, 'writeQueue.workers');
    expect(() => setup({ size: 1 } as unknown as WriteQueueOptions)).to.throw(BillingConfigError, 'Unknown option writeQueue.size');
  });

  it('2,000 critical tasks against a full queue all run in their callers without waiting on the blocked work', async () => {
    const { queue } = setup();
    const blocked = blockers();
    for (let i = 0; i < 1010; i++) expect(queue.enqueue(`fill${i}`, blocked.task)).to.equal(true);
    expect([queue.running, queue.depth, blocked.state.started]).to.deep.equal([10, 1000, 10]);

    let applied = 0;
    const critical = Array.from({ length: 2000 }, (_, i) =>
      queue.enqueueCritical(`settle${i}`, async () => {
        await Promise.resolve();
        applied++;
      }),
    );
    await Promise.all(critical);
    expect(applied).to.equal(2000);
    expect(queue.ranInline).to.equal(2000);
    // The queued work is still blocked: none of the critical tasks waited for it.
    expect([queue.running, queue.depth, blocked.state.started, blocked.state.finished]).to.deep.equal([10, 1000, 10, 0]);
    expect(queue.dropped).to.equal(0);

    blocked.release();
    await queue.close();
    expect(blocked.state.finished).to.equal(1010);
  });

  it('a queued critical task resolves its promise only after it has run', async () => {
    const { queue } = setup({ workers: 1 });
    const blocked = blockers();
    queue.enqueue('block', blocked.task);
    let ran = false;
    let resolved = false;
    const p = queue
      .enqueueCritical('settle', async () => {
        ran = true;
      })
      .then(() => (resolved = true));
    expect(queue.depth).to.equal(1);
    await tick();
    expect([ran, resolved]).to.deep.equal([false, false]);
    blocked.release();
    await p;
    expect([ran, resolved]).to.deep.equal([true, true]);
  });

  it('counts drops and logs them at most once per 5 s per reason, with the count', async () => {
    const { queue, lines, advance } = setup({ workers: 1, capacity: 1 });
    const blocked = blockers();
    expect(queue.enqueue('running', blocked.task)).to.equal(true);
    expect(queue.enqueue('queued', blocked.task)).to.equal(true);
    for (let i = 0; i < 10; i++) expect(queue.enqueue('fill', blocked.task)).to.equal(false);
    expect(queue.dropped).to.equal(10);
    const drops = () => lines.filter((l) => l.obj.reason === 'queue_full').map((l) => [l.level, l.obj.count]);
    expect(drops()).to.deep.equal([['warn', 1]]);
    advance(4999);
    queue.enqueue('fill', blocked.task);
    expect(drops()).to.have.length(1);
    advance(1);
    queue.enqueue('fill', blocked.task);
    expect(drops()).to.deep.equal([
      ['warn', 1],
      ['warn', 11],
    ]);
    expect(queue.dropped).to.equal(12);

    const closing = queue.close();
    expect(queue.enqueue('late', blocked.task)).to.equal(false);
    expect(lines.filter((l) => l.obj.reason === 'queue_closed').map((l) => l.obj.count)).to.deep.equal([1]);
    queue.enqueue('late', blocked.task);
    blocked.release();
    await closing;
    // close() reports the occurrences still held back by the throttle.
    expect(lines.filter((l) => l.obj.reason === 'queue_closed').map((l) => l.obj.count)).to.deep.equal([1, 1]);
    expect(queue.dropped).to.equal(14);
  });

  it('close() drains every queued task in order, then runs critical tasks in the caller', async () => {
    const { queue } = setup({ workers: 2 });
    const done: number[] = [];
    for (let i = 0; i < 20; i++) {
      queue.enqueue(`t${i}`, async () => {
        await tick();
        done.push(i);
      });
    }
    await queue.close();
    expect([...done].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 20 }, (_, i) => i));
    expect(done.indexOf(0)).to.be.lessThan(done.indexOf(19));
    expect([queue.depth, queue.running]).to.deep.equal([0, 0]);

    let ran = false;
    await queue.enqueueCritical('after-close', async () => {
      ran = true;
    });
    expect(ran).to.equal(true);
    expect(queue.ranInline).to.equal(1);
  });

  it('close() also waits for critical tasks running in their callers', async () => {
    const { queue } = setup({ workers: 1, capacity: 1 });
    const blocked = blockers();
    queue.enqueue('a', blocked.task);
    queue.enqueue('b', blocked.task);
    const inline = queue.enqueueCritical('c', blocked.task);
    expect(queue.running).to.equal(2);
    let closed = false;
    const closing = queue.close().then(() => (closed = true));
    await tick();
    expect(closed).to.equal(false);
    blocked.release();
    await Promise.all([closing, inline]);
    expect(blocked.state.finished).to.equal(3);
  });

  it('a task past its timeout is aborted and logged, and its worker moves on', async () => {
    const { queue, lines } = setup({ workers: 1, taskTimeoutMs: 20 });
    let hungSignal: AbortSignal | undefined;
    queue.enqueue('hung', (signal) => {
      hungSignal = signal;
      return new Promise(() => {});
    });
    let nextRan = false;
    await queue.enqueueCritical('next', async () => {
      nextRan = true;
    });
    expect(nextRan).to.equal(true);
    expect(hungSignal?.aborted).to.equal(true);
    expect(hungSignal?.reason).to.be.instanceOf(WriteTaskTimeoutError);
    expect(lines.filter((l) => l.obj.reason === 'task_timeout').map((l) => l.obj.task)).to.deep.equal(['hung']);
    await queue.close();
  });

  it('task errors are logged and never escape: rejections, sync throws, late rejections, throwing loggers', async () => {
    const { queue, lines } = setup({ workers: 2, taskTimeoutMs: 10 });
    queue.enqueue('rejects', async () => {
      throw new Error('redis down');
    });
    queue.enqueue('throws', () => {
      throw new Error('sync');
    });
    queue.enqueue('late', (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('late')))));
    await queue.enqueueCritical('critical-rejects', () => Promise.reject(new Error('cache put failed')));
    await queue.close();
    const failed = lines.filter((l) => String(l.obj.reason).startsWith('task_failed'));
    expect(failed.length).to.be.greaterThan(0);
    expect(failed[0]?.obj.task).to.equal('rejects');

    const angry: BillingLogger = {
      debug() {},
      info() {},
      error() {},
      warn() {
        throw new Error('logger broken');
      },
    };
    const fragile = new WriteQueue({ workers: 1, capacity: 1 }, { clock: { now: () => 0 }, logger: angry });
    await fragile.enqueueCritical('x', async () => {
      throw new Error('boom');
    });
    const blocked = blockers();
    fragile.enqueue('a', blocked.task);
    fragile.enqueue('b', blocked.task);
    expect(fragile.enqueue('c', blocked.task)).to.equal(false);
    blocked.release();
    await fragile.close();
  });
});

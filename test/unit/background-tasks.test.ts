// Unit tests for lib/background-tasks.ts: one task per key at a time, failures and timeouts only logged, idle() waits.
import { expect } from 'chai';
import { BackgroundTasks } from '../../lib/background-tasks.js';
import { ManualClock } from '../../lib/clock.js';
import { ThrottledLog } from '../../lib/log.js';
import type { BillingLogger } from '../../lib/types.js';
import { failOnUnhandledRejections } from '../helpers/unhandled-rejections.js';

function setup(timeoutMs = 1_000) {
  const warnings: Record<string, unknown>[] = [];
  const logger: BillingLogger = { debug() {}, info() {}, warn: (obj) => void warnings.push(obj as Record<string, unknown>), error() {} };
  // Interval 0: every warning is logged, none throttled.
  const tasks = new BackgroundTasks(timeoutMs, new ThrottledLog(logger, new ManualClock(0), 0));
  return { tasks, warnings };
}

/** A task that runs until release() or fail() is called. */
function gated() {
  let release!: () => void;
  let fail!: (err: Error) => void;
  const state = { started: 0 };
  const gate = new Promise<void>((resolve, reject) => {
    release = resolve;
    fail = reject;
  });
  const task = () => {
    state.started++;
    return gate;
  };
  return { task, state, release: () => release(), fail: (err: Error) => fail(err) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('BackgroundTasks', () => {
  failOnUnhandledRejections();

  it('runs one task per key at a time, and the key again once it has finished', async () => {
    const { tasks } = setup();
    const first = gated();
    tasks.run('reset:u1:k1', first.task);
    tasks.run('reset:u1:k1', first.task);
    expect(first.state.started, 'a second run of a running key is dropped').to.equal(1);
    tasks.run('reset:u2:k1', first.task);
    expect(first.state.started, 'another key runs').to.equal(2);
    expect(tasks.size).to.equal(2);
    first.release();
    await tasks.idle();
    expect(tasks.size).to.equal(0);
    const again = gated();
    tasks.run('reset:u1:k1', again.task);
    expect(again.state.started).to.equal(1);
    again.release();
    await tasks.idle();
  });

  it('logs a failure with the task kind and the error, never the ids in the key, and does not reject', async () => {
    const { tasks, warnings } = setup();
    const task = gated();
    tasks.run('releaseLease:user-secret:lease-1', task.task);
    task.fail(new Error('redis down'));
    await tasks.idle();
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.include({ reason: 'background_failed', task: 'releaseLease', err: 'Error: redis down' });
    expect(JSON.stringify(warnings)).not.to.contain('user-secret');
  });

  it('stops waiting for a task that outlives the timeout, with one warning', async () => {
    const { tasks, warnings } = setup(30);
    const hanging = gated();
    tasks.run('reset:u1:k1', hanging.task);
    const startedAt = Date.now();
    await tasks.idle();
    expect(Date.now() - startedAt).to.be.within(20, 1_000);
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.include({ reason: 'background_timeout', task: 'reset' });
    expect(tasks.size, 'the key is free again').to.equal(0);
    hanging.release();
  });

  it('logs no timeout for a task that finished in time', async () => {
    const { tasks, warnings } = setup(20);
    tasks.run('reset:u1:k1', async () => {});
    await tasks.idle();
    await sleep(60);
    expect(warnings).to.deep.equal([]);
  });
});

// Bounded queue of asynchronous cache writes served by a fixed pool of workers (docs/behaviour.md#background-cache-writes).
import { ThrottledLog } from './log.js';
import { parseOptions, v } from './options.js';
import type { BillingLogger, Clock } from './types.js';

export interface WriteQueueOptions {
  /** Tasks waiting for a worker (running ones not included). Default 1000. */
  capacity?: number;
  /** Tasks run concurrently by the workers. Default 10. */
  workers?: number;
  /** Each task's own timeout in ms: its signal aborts and its worker moves on. Default 2000. */
  taskTimeoutMs?: number;
}

export const WRITE_QUEUE_DEFAULTS: Readonly<Required<WriteQueueOptions>> = Object.freeze({
  capacity: 1000,
  workers: 10,
  taskTimeoutMs: 2000,
});

export type WriteTask = (signal: AbortSignal) => Promise<unknown>;

interface QueuedTask {
  name: string;
  task: WriteTask;
  /** Resolves the enqueueCritical promise; absent for best-effort tasks. */
  done?: () => void;
}

/** Thrown into a task's signal when it ran past taskTimeoutMs. */
export class WriteTaskTimeoutError extends Error {
  override readonly name = 'WriteTaskTimeoutError';
}

export class WriteQueue {
  readonly options: Readonly<Required<WriteQueueOptions>>;
  readonly #throttled: ThrottledLog;
  // A plain array: shift() is cheap at these sizes and the order is FIFO.
  readonly #queue: QueuedTask[] = [];
  #busyWorkers = 0;
  #inline = 0;
  #dropped = 0;
  #ranInline = 0;
  #closed = false;
  #idleWaiters: (() => void)[] = [];

  constructor(options: WriteQueueOptions | undefined, deps: { clock: Clock; logger: BillingLogger }) {
    this.options = parseOptions<Required<WriteQueueOptions>>('writeQueue', options, WRITE_QUEUE_DEFAULTS, {
      capacity: v.positiveInt(),
      workers: v.positiveInt(),
      taskTimeoutMs: v.positiveInt(),
    });
    this.#throttled = new ThrottledLog(deps.logger, deps.clock, 5000);
  }

  /**
   * Best-effort task (a cache fill after a miss): dropped when the queue is full or closed (the next
   * read simply misses again). Never blocks, never throws. Returns whether it was queued.
   */
  enqueue(name: string, task: WriteTask): boolean {
    const reason = this.#closed ? 'queue_closed' : this.#queue.length >= this.options.capacity ? 'queue_full' : null;
    if (reason) {
      this.#dropped++;
      this.#safely(() => this.#throttled.warn(reason, { task: name, dropped: this.#dropped }, 'billing write queue dropped a cache fill'));
      return false;
    }
    this.#queue.push({ name, task });
    this.#pump();
    return true;
  }

  /**
   * Critical task (a settlement's or an admin write's cache update): queued if there is room, else
   * run at once in the caller, so it neither waits behind others' work nor is lost. The promise
   * settles when the task has run (or timed out); it never rejects, task errors are logged.
   */
  enqueueCritical(name: string, task: WriteTask): Promise<void> {
    if (!this.#closed && this.#queue.length < this.options.capacity) {
      return new Promise<void>((resolve) => {
        this.#queue.push({ name, task, done: resolve });
        this.#pump();
      });
    }
    this.#inline++;
    this.#ranInline++;
    return this.#execute({ name, task }).then(() => {
      this.#inline--;
      this.#notifyIfIdle();
    });
  }

  /** Tasks waiting for a worker. */
  get depth(): number {
    return this.#queue.length;
  }

  /** Best-effort tasks dropped since construction. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Tasks executing now: on workers, plus critical ones running in their callers. */
  get running(): number {
    return this.#busyWorkers + this.#inline;
  }

  /** Critical tasks that ran in their caller because the queue was full or closed. */
  get ranInline(): number {
    return this.#ranInline;
  }

  /** Stops intake (enqueue → dropped, enqueueCritical → runs in the caller) and waits for everything queued and running. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#queue.length > 0 || this.running > 0) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
    this.#safely(() => this.#throttled.flush());
  }

  #pump(): void {
    while (this.#busyWorkers < this.options.workers && this.#queue.length > 0) {
      const item = this.#queue.shift() as QueuedTask;
      this.#busyWorkers++;
      const finish = (): void => {
        this.#busyWorkers--;
        item.done?.();
        this.#pump();
        this.#notifyIfIdle();
      };
      this.#execute(item).then(finish, finish);
    }
  }

  /** Runs one task under its timeout; always resolves. */
  async #execute(item: QueuedTask): Promise<void> {
    const controller = new AbortController();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort(new WriteTaskTimeoutError(`write task ${item.name} timed out after ${this.options.taskTimeoutMs} ms`));
        resolve();
      }, this.options.taskTimeoutMs);
      // The timer alone must not keep a process alive; the task's own I/O does if it must.
      timer.unref();
    });
    let run: Promise<unknown>;
    try {
      run = Promise.resolve(item.task(controller.signal));
    } catch (err) {
      run = Promise.reject(err);
    }
    // Handled here for good, so a task failing after its timeout is never an unhandled rejection.
    const outcome = run.then(
      () => undefined,
      (err: unknown) => {
        const reason = timedOut ? 'task_failed_after_timeout' : 'task_failed';
        this.#safely(() => this.#throttled.warn(reason, { task: item.name, err }, 'billing write task failed'));
      },
    );
    await Promise.race([outcome, timeout]);
    clearTimeout(timer);
    if (timedOut) {
      this.#safely(() => this.#throttled.warn('task_timeout', { task: item.name, timeoutMs: this.options.taskTimeoutMs }, 'billing write task timed out'));
    }
  }

  #notifyIfIdle(): void {
    if (this.#queue.length > 0 || this.running > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** A throwing user logger must not turn into a rejected write or a stuck worker. */
  #safely(log: () => void): void {
    try {
      log();
    } catch {
      // Nothing left to report it to.
    }
  }
}

// Detached background work (e.g. key-window resets): deduplicated per key, time-limited, never an
// unhandled rejection, and awaited by close().
import type { ThrottledLog } from './log.js';

export class BackgroundTasks {
  readonly #running = new Map<string, Promise<void>>();

  constructor(
    private readonly timeoutMs: number,
    private readonly warnings: ThrottledLog,
  ) {}

  /**
   * Starts `task` unless one with the same key is still running. Errors and timeouts are only
   * logged; a task that outlives the timeout is no longer waited for (close() stops waiting), though
   * it may still finish. One unref'd timer per task, cleared when it settles: no AbortSignal,
   * whose timeout would fire (and build an error) for every task, long after most have finished.
   */
  run(key: string, task: () => Promise<unknown>): void {
    if (this.#running.has(key)) return;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.warnings.warn('background_timeout', { task: taskName(key) }, 'billing background task timed out');
        resolve();
      }, this.timeoutMs);
      timer.unref();
      task()
        .then(
          () => resolve(),
          (err: unknown) => {
            this.warnings.warn('background_failed', { task: taskName(key), err: errorText(err) }, 'billing background task failed');
            resolve();
          },
        )
        .finally(() => clearTimeout(timer));
    }).finally(() => this.#running.delete(key));
    this.#running.set(key, done);
  }

  get size(): number {
    return this.#running.size;
  }

  /** Resolves when every task started so far has finished or timed out. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running.values());
  }
}

/** The kind of a task, from its key (`kind:ids…`): logged instead of the ids. */
function taskName(key: string): string {
  const colon = key.indexOf(':');
  return colon < 0 ? key : key.slice(0, colon);
}

/** A short description of an error for logs (never sent to clients). */
export function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

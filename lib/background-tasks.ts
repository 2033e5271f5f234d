// Detached background work (e.g. key-window resets): deduplicated per key, time-limited, never an
// unhandled rejection, and awaited by close().
import type { ThrottledLog } from './log.js';

export class BackgroundTasks {
  readonly #running = new Map<string, Promise<void>>();

  constructor(private readonly timeoutMs: number, private readonly warnings: ThrottledLog) {}

  /** Starts `task` unless one with the same key is still running. Errors and timeouts are only logged. */
  run(key: string, task: (signal: AbortSignal) => Promise<unknown>): void {
    if (this.#running.has(key)) return;
    const signal = AbortSignal.timeout(this.timeoutMs);
    const done = new Promise<void>((resolve) => {
      const onAbort = () => {
        this.warnings.warn('background_timeout', { task: key.split(':')[0] }, 'billing background task timed out');
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      task(signal).then(
        () => resolve(),
        (err: unknown) => {
          this.warnings.warn('background_failed', { task: key.split(':')[0], err: errorText(err) }, 'billing background task failed');
          resolve();
        },
      ).finally(() => signal.removeEventListener('abort', onAbort));
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

/** A short description of an error for logs (never sent to clients). */
export function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

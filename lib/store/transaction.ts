// Runs a unit of work in a transaction, retrying it whole when the database aborts it for a deadlock or a serialization failure.
import type { Knex } from 'knex';
import type { BillingLogger } from '../types.js';

// PostgreSQL serialization_failure and deadlock_detected: the transaction was rolled back and is safe to
// run again. SQLITE_BUSY: another process held the database file longer than the busy timeout.
// (SQLITE_BUSY_SNAPSHOT and friends are WAL-mode variants of the same thing.)
const RETRYABLE_CODES = new Set(['40001', '40P01']);

export function isRetryableTransactionError(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && (RETRYABLE_CODES.has(code) || code.startsWith('SQLITE_BUSY'));
}

export interface RetryPolicy {
  /** Total attempts, including the first. */
  attempts: number;
  /** Delay before the first retry, ms; doubles each time, with full jitter. */
  baseDelayMs: number;
  logger: BillingLogger;
}

/**
 * Runs `work` in a fresh transaction; on a retryable abort runs it again in a new one. Anything else,
 * and the last retryable error, reaches the caller. `work` must not have effects outside the transaction.
 */
export async function inTransaction<T>(knex: Knex, operation: string, policy: RetryPolicy, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await knex.transaction(work);
    } catch (err) {
      if (!isRetryableTransactionError(err) || attempt >= policy.attempts) throw err;
      const code = (err as { code: string }).code;
      policy.logger.warn({ operation, attempt, code }, 'billing store transaction aborted by the database; retrying');
      // Full jitter: transactions that collided once should not collide again in lockstep.
      await sleep(Math.random() * policy.baseDelayMs * 2 ** (attempt - 1));
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

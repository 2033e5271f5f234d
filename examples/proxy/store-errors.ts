// Tells an unreachable database or cache apart from a bug: the first is answered 503 (retry later),
// the second 500. Only errors the drivers raise when a service is down, slow or restarting qualify.

/** Socket-level failures of any client. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** PostgreSQL SQLSTATEs of a server that is shutting down, starting, or out of connections. */
const POSTGRES_UNAVAILABLE = new Set(['57P01', '57P02', '57P03', '53300']);

/** node-postgres and knex failures that carry no code. */
const DRIVER_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error/i;

/** How deep a chain of `cause`s is followed (a cyclic one must not loop). */
const MAX_CAUSE_DEPTH = 5;

export function isServiceUnavailable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > MAX_CAUSE_DEPTH) return false;
  const { name, code, message, cause } = err as { name?: unknown; code?: unknown; message?: unknown; cause?: unknown };
  if (name === 'KnexTimeoutError') return true;
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || POSTGRES_UNAVAILABLE.has(code) || code.startsWith('08'))) return true;
  if (typeof message === 'string' && DRIVER_MESSAGES.test(message)) return true;
  // SQLite: the database file is locked by another writer for longer than busy_timeout.
  if (code === 'SQLITE_BUSY') return true;
  return cause !== undefined && isServiceUnavailable(cause, depth + 1);
}

// Boundary validation of ids, platform names and request ids before they become Redis keys or SQL.

/** Thrown for malformed input at the public boundary; `field` names the offending input. */
export class BillingValidationError extends TypeError {
  override readonly name = 'BillingValidationError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

// No ':', '{', '}' or spaces: ids are embedded in Redis key names and hash tags.
const ID = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
const PLATFORM = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * A bad input value, for an error message: strings quoted and cut, objects by their type (String()
 * of an object may throw, or run the caller's code), everything else as String() writes it.
 */
export function describeInput(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null) return 'null';
  return typeof value === 'object' || typeof value === 'function' ? typeof value : String(value);
}

/** A user/key/group id: a non-negative safe integer or a 1–64 character [A-Za-z0-9_.@-] string. */
export function normalizeId(value: unknown, field: string): string {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  if (typeof value === 'string' && ID.test(value)) return value;
  throw new BillingValidationError(field, `${field} must be a non-negative integer or 1-64 characters of [A-Za-z0-9_.@-], got ${describeInput(value)}`);
}

/** A platform name: lower-case, 1–32 characters of [a-z0-9_-], starting with a letter or digit. */
export function normalizePlatform(value: unknown, field = 'platform'): string {
  if (typeof value === 'string' && PLATFORM.test(value)) return value;
  throw new BillingValidationError(field, `${field} must match ${PLATFORM.source}, got ${describeInput(value)}`);
}

/** A request id: 1–128 printable ASCII characters without spaces. */
export function normalizeRequestId(value: unknown, field = 'requestId'): string {
  if (typeof value === 'string' && REQUEST_ID.test(value)) return value;
  throw new BillingValidationError(field, `${field} must be 1-128 printable ASCII characters without spaces, got ${describeInput(value)}`);
}

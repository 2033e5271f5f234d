// Validation of the gateway's own inputs (admin request fields, seed data), with errors naming the field.
import { formatUsd, parseLimitUsd, parseUsd } from '../../lib/index.js';

/** A bad field in a request; rendered as 400 with this message (it names the field, never a secret). */
export class InputError extends Error {
  override readonly name = 'InputError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/**
 * Ids of users, groups and keys: 1-32 characters of [A-Za-z0-9_-]. Stricter than the billing
 * library's ids, so that derived ids (e.g. "<user>.<group>") still fit its 64-character limit.
 */
export function gatewayId(value: unknown, field: string): string {
  if (typeof value === 'string' && /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(value)) return value;
  throw new InputError(field, `${field} must be 1-32 characters of [A-Za-z0-9_-], got ${show(value)}`);
}

/** A decimal written with more places than the 8 kept would be rounded: refused instead (admin input is exact). */
function assertPrecision(value: string | number, field: string): void {
  const places = typeof value === 'string' ? /^\s*[+-]?\d*\.(\d*?)0*\s*$/.exec(value)?.[1] : undefined;
  if (places !== undefined && places.length > 8) throw new InputError(field, `${field} has more than 8 decimal places, got ${show(value)}`);
}

/**
 * A non-negative USD limit as an exact 8-decimal string; null/undefined/"" → null (no limit). A
 * positive amount below 0.00000001 is refused (it would read as 0, which blocks a platform quota).
 */
export function optionalUsd(value: unknown, field: string): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string' && typeof value !== 'number') throw new InputError(field, `${field} must be a decimal string, got ${show(value)}`);
  assertPrecision(value, field);
  try {
    return formatUsd(parseLimitUsd(value, field));
  } catch (err) {
    throw new InputError(field, (err as Error).message);
  }
}

/** A required USD amount (may be negative only when `allowNegative`). */
export function requiredUsd(value: unknown, field: string, allowNegative = false): string {
  if (typeof value !== 'string' && typeof value !== 'number')
    throw new InputError(field, `${field} is required (a decimal string such as "5.00"), got ${show(value)}`);
  assertPrecision(value, field);
  try {
    const units = parseUsd(value, field);
    if (units < 0n && !allowNegative) throw new InputError(field, `${field} must not be negative, got ${show(value)}`);
    return formatUsd(units);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(field, (err as Error).message);
  }
}

/** An integer from 0 to `max`. */
function cappedInt(value: unknown, field: string, max: number): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= max) return value;
  throw new InputError(field, `${field} must be an integer from 0 to ${max}, got ${show(value)}`);
}

/** A requests-per-minute cap: a non-negative integer (0 = none). */
export const rpmValue = (value: unknown, field: string): number => cappedInt(value, field, 1_000_000);

/** A concurrency cap: requests in flight at once, 0 = none. */
export const concurrencyValue = (value: unknown, field: string): number => cappedInt(value, field, 100_000);

/** An optional short display name. */
export function optionalName(value: unknown, field: string, fallback: string): string {
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'string' && value.length >= 1 && value.length <= 100) return value;
  throw new InputError(field, `${field} must be a string of 1-100 characters, got ${show(value)}`);
}

/** The body must be a JSON object for every admin write. */
export function objectBody(value: unknown): Record<string, unknown> {
  if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  throw new InputError('body', 'the request body must be a JSON object');
}

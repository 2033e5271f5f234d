// Exact USD arithmetic: amounts are bigint counts of 10⁻⁸ USD ("units"), never binary floats (docs/money-and-limits.md).

/** A USD amount as accepted by the public API: a number or a decimal string. */
export type Usd = number | string;

/** Number of decimal places kept; the store's NUMERIC(20,8). */
export const USD_SCALE = 8;
/** 1 USD in units. */
export const UNITS_PER_USD = 100_000_000n;
/**
 * Largest magnitude accepted, in units: 2⁵³−1 (about 90 million USD). Redis INCRBY and Lua
 * numbers (doubles) stay exact up to here, so every cached value is exact too.
 */
export const MAX_USD_UNITS = BigInt(Number.MAX_SAFE_INTEGER);

const DECIMAL = /^([+-])?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** A bad amount; `field` names the input it came from (e.g. 'costUsd'). */
export class MoneyError extends RangeError {
  override readonly name = 'MoneyError';
  constructor(
    message: string,
    readonly field = 'amount',
  ) {
    super(message);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return String(value);
}

/** A parsed amount, and what rounding to 8 decimals hid: the input's sign and whether it was zero. */
interface ParsedUsd {
  units: bigint;
  /** The input was below zero, however little (a tiny negative rounds to 0 units). */
  negative: boolean;
  /** The input was exactly zero (a tiny positive also rounds to 0 units, but is not zero). */
  zero: boolean;
}

const BIGINT_REFUSED = 'must be a number or a decimal string of USD (e.g. 10 or "0.0123"), not a bigint: a bigint could mean dollars or 10⁻⁸ units';

/**
 * Parses a number or decimal string of USD into units, rounding half away from zero at the 8th
 * decimal. Numbers are read through their shortest round-trip decimal form (`String(0.1)` is
 * "0.1"), so `0.1` means exactly one tenth. Throws MoneyError naming the field for NaN, ±Infinity,
 * non-numeric strings, bigints (ambiguous: dollars or units?) and magnitudes beyond MAX_USD_UNITS.
 */
export function parseUsd(value: Usd, what = 'amount'): bigint {
  return parseUsdParts(value, what).units;
}

function parseUsdParts(value: unknown, what: string): ParsedUsd {
  if (typeof value === 'bigint') throw new MoneyError(`${what} ${BIGINT_REFUSED}`, what);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new MoneyError(`${what} must be a finite number, got ${describe(value)}`, what);
    return parseDecimal(String(value), value, what);
  }
  if (typeof value !== 'string') throw new MoneyError(`${what} must be a number or a decimal string, got ${typeof value}`, what);
  return parseDecimal(value.trim(), value, what);
}

function parseDecimal(text: string, original: unknown, what: string): ParsedUsd {
  const match = text.length <= 64 ? DECIMAL.exec(text) : null;
  if (!match || (!match[2] && !match[3])) {
    throw new MoneyError(`${what} must be a decimal amount, got ${describe(original)}`, what);
  }
  const [, sign, intPart = '', fracPart = '', expPart] = match;
  const exponent = expPart === undefined ? 0 : Number(expPart);
  const zero = !/[1-9]/.test(intPart + fracPart);
  // Below 10⁻⁹ whatever its digits (5e-324, "1e-99"): 0 units, and still the sign it had.
  if (Number.isSafeInteger(exponent) && intPart.length + exponent < -USD_SCALE) return { units: 0n, negative: sign === '-' && !zero, zero };
  if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > 40) {
    throw new MoneyError(`${what} is out of range, got ${describe(original)}`, what);
  }
  // Shift the decimal point by the exponent, then split at USD_SCALE places.
  let digits = intPart + fracPart;
  let pointAt = intPart.length + exponent;
  if (pointAt < 0) {
    digits = '0'.repeat(-pointAt) + digits;
    pointAt = 0;
  }
  if (pointAt > digits.length) digits += '0'.repeat(pointAt - digits.length);
  const whole = digits.slice(0, pointAt) || '0';
  const fraction = digits.slice(pointAt).padEnd(USD_SCALE + 1, '0');
  if (whole.replace(/^0+/, '').length > 20) throw new MoneyError(`${what} is out of range, got ${describe(original)}`, what);
  let units = BigInt(whole) * UNITS_PER_USD + BigInt(fraction.slice(0, USD_SCALE));
  // Half away from zero: the magnitude rounds up when the first dropped digit is 5 or more.
  if (fraction.charCodeAt(USD_SCALE) >= 53 /* '5' */) units += 1n;
  return { units: checkRange(sign === '-' ? -units : units, original, what), negative: sign === '-' && !zero, zero };
}

function checkRange(units: bigint, original: unknown, what: string): bigint {
  if (units > MAX_USD_UNITS || units < -MAX_USD_UNITS) {
    throw new MoneyError(`${what} is out of range (±${formatUsd(MAX_USD_UNITS)} USD), got ${describe(original)}`, what);
  }
  return units;
}

/** parseUsdParts, refusing negative input of any size (a tiny negative rounds to 0 units, and is still refused). */
function nonNegativeParts(value: Usd, what: string): ParsedUsd {
  const parts = parseUsdParts(value, what);
  if (parts.negative) throw new MoneyError(`${what} must not be negative, got ${describe(value)}`, what);
  return parts;
}

/** Parses a cost or a limit: like parseUsd, and refuses negative input of any size (never rounded to 0). */
export function parseCostUsd(value: Usd, what = 'costUsd'): bigint {
  return nonNegativeParts(value, what).units;
}

/**
 * Parses a limit where 0 has a meaning of its own (a platform quota of 0 blocks): like
 * parseCostUsd, and refuses a positive amount that rounds to 0 at 8 decimals rather than turn it
 * into that meaning.
 */
export function parseLimitUsd(value: Usd, what: string): bigint {
  const { units, zero } = nonNegativeParts(value, what);
  if (units === 0n && !zero) throw new MoneyError(`${what} is below 0.00000001 USD, the smallest amount kept, got ${describe(value)}`, what);
  return units;
}

/** Formats units as a decimal string with exactly 8 places, e.g. "-0.12300000". */
export function formatUsd(units: bigint): string {
  const negative = units < 0n;
  const magnitude = (negative ? -units : units).toString().padStart(USD_SCALE + 1, '0');
  const point = magnitude.length - USD_SCALE;
  return `${negative ? '-' : ''}${magnitude.slice(0, point)}.${magnitude.slice(point)}`;
}

/** Sum of amounts, exact. */
export function sumUsd(amounts: Iterable<bigint>): bigint {
  let total = 0n;
  for (const amount of amounts) total += amount;
  return total;
}

/** -1, 0 or 1 as a is below, equal to or above b. */
export function compareUsd(a: bigint, b: bigint): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Multiplies an amount by a decimal rate (a price multiplier, a token count ÷ 1e6, …), rounding
 * half away from zero at the 8th decimal. The rate is parsed exactly from its decimal form with
 * up to 18 decimal places.
 */
export function multiplyUsd(units: bigint, rate: number | string | bigint, what = 'rate'): bigint {
  if (typeof rate === 'bigint') return checkRange(units * rate, rate, what);
  const [numerator, scale] = parseRate(rate, what);
  const product = units * numerator;
  const quotient = product / scale;
  const remainder = product % scale;
  const twice = (remainder < 0n ? -remainder : remainder) * 2n;
  const rounded = twice >= scale ? quotient + (product < 0n ? -1n : 1n) : quotient;
  return checkRange(rounded, rate, what);
}

const RATE_SCALE_DIGITS = 18;

/** A decimal rate as numerator / 10^18, exact. */
function parseRate(rate: number | string, what: string): [bigint, bigint] {
  if (typeof rate === 'number' && !Number.isFinite(rate)) {
    throw new MoneyError(`${what} must be a finite number, got ${describe(rate)}`, what);
  }
  const text = typeof rate === 'number' ? String(rate) : rate.trim();
  const match = text.length <= 64 ? DECIMAL.exec(text) : null;
  if (!match || (!match[2] && !match[3])) throw new MoneyError(`${what} must be a decimal number, got ${describe(rate)}`, what);
  const [, sign, intPart = '', fracPart = '', expPart] = match;
  const exponent = expPart === undefined ? 0 : Number(expPart);
  const shift = RATE_SCALE_DIGITS + exponent;
  if (Math.abs(exponent) > 40) throw new MoneyError(`${what} is out of range, got ${describe(rate)}`, what);
  const digits = BigInt(intPart + fracPart || '0');
  const fractionDigits = fracPart.length;
  const power = shift - fractionDigits;
  const numerator = power >= 0 ? digits * 10n ** BigInt(power) : digits / 10n ** BigInt(-power);
  return [sign === '-' ? -numerator : numerator, 10n ** BigInt(RATE_SCALE_DIGITS)];
}

/** Units as a JS number, for places that need one (Redis replies, metrics); exact within range. */
export function unitsToNumber(units: bigint): number {
  return Number(checkRange(units, units, 'amount'));
}

// One option parser for every factory: reject unknown keys, merge frozen defaults with ??, validate, freeze.
import { MoneyError, parseCostUsd } from './money.js';

/** A misconfiguration found at construction; `option` is the full option path, e.g. `circuitBreaker.failureThreshold`. */
export class BillingConfigError extends TypeError {
  override readonly name = 'BillingConfigError';
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(message);
  }
}

/** Checks one option value and returns it typed; throws BillingConfigError naming `name`. */
export type Validator<T> = (value: unknown, name: string) => T;

/** One validator per option; every key of T must have one, optional keys included. */
export type OptionValidators<T> = { [K in keyof T]-?: Validator<T[K]> };

/** How a bad value is shown in an error: short, and never a whole object dumped into a log line. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'bigint') return `${value}n`;
  return String(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Parses a factory's options once, at construction, so the request path never re-validates.
 * `input` undefined → all defaults. Unknown keys throw (a typo must not silently become a default).
 * A value of undefined or null means "use the default" (merged with ??). Each merged value, defaults
 * included, goes through its validator. The result is a new frozen object; `defaults` is not touched.
 */
export function parseOptions<T extends object>(scope: string, input: unknown, defaults: Readonly<T>, validators: OptionValidators<T>): Readonly<T> {
  const known = Object.keys(validators) as (keyof T & string)[];
  const path = (key: string): string => (scope ? `${scope}.${key}` : key);
  let given: Record<string, unknown> = {};
  if (isPlainObject(input)) given = input;
  else if (input !== undefined) {
    throw new BillingConfigError(scope, `${scope || 'options'} must be a plain object, got ${describeValue(input)}`);
  }
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(validators, key)) {
      throw new BillingConfigError(path(key), `Unknown option ${path(key)}; valid options are: ${known.join(', ')}`);
    }
  }
  const result = {} as T;
  for (const key of known) {
    const validate = validators[key] as Validator<T[typeof key]>;
    result[key] = validate(given[key] ?? defaults[key], path(key));
  }
  return Object.freeze(result);
}

function fail(name: string, expected: string, value: unknown): never {
  throw new BillingConfigError(name, `${name} must be ${expected}, got ${describeValue(value)}`);
}

function int(min: number, max: number, expected: string): Validator<number> {
  return (value, name) => {
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max) return value;
    return fail(name, max === Number.MAX_SAFE_INTEGER ? expected : `${expected} ≤ ${max}`, value);
  };
}

/** Validator builders. Each returns `(value, name) => T` and throws `${name} must be …, got …`. */
export const v = {
  /** An integer ≥ 1 (and ≤ max when given). */
  positiveInt(max = Number.MAX_SAFE_INTEGER): Validator<number> {
    return int(1, max, 'a positive integer');
  },
  /** An integer in [min, max]. */
  intInRange(min: number, max: number): Validator<number> {
    return int(min, max, `an integer from ${min} to ${max}`);
  },
  /** An integer ≥ 0 (and ≤ max when given). */
  nonNegativeInt(max = Number.MAX_SAFE_INTEGER): Validator<number> {
    return int(0, max, 'a non-negative integer');
  },
  boolean(): Validator<boolean> {
    return (value, name) => (typeof value === 'boolean' ? value : fail(name, 'a boolean', value));
  },
  /** Any string, the empty one included. */
  string(): Validator<string> {
    return (value, name) => (typeof value === 'string' ? value : fail(name, 'a string', value));
  },
  nonEmptyString(): Validator<string> {
    return (value, name) => (typeof value === 'string' && value !== '' ? value : fail(name, 'a non-empty string', value));
  },
  oneOf<T extends string>(...values: T[]): Validator<T> {
    const expected = `one of ${values.map((s) => JSON.stringify(s)).join(', ')}`;
    return (value, name) => ((values as unknown[]).includes(value) ? (value as T) : fail(name, expected, value));
  },
  /** A function; T is the caller's promise about its signature (it cannot be checked at runtime). */
  func<T>(): Validator<T> {
    return (value, name) => (typeof value === 'function' ? (value as T) : fail(name, 'a function', value));
  },
  /** A non-null, non-array object having each of `methods` as a function (duck typing, e.g. a logger or clock). */
  object<T>(...methods: string[]): Validator<T> {
    const expected = methods.length ? `an object with ${methods.map((m) => `${m}()`).join(', ')}` : 'an object';
    return (value, name) => {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(name, expected, value);
      const record = value as Record<string, unknown>;
      for (const method of methods) {
        if (typeof record[method] !== 'function') return fail(name, expected, value);
      }
      return value as T;
    };
  },
  /** undefined or null → undefined, anything else through `inner`. */
  optional<T>(inner: Validator<T>): Validator<T | undefined> {
    return (value, name) => (value === undefined || value === null ? undefined : inner(value, name));
  },
  /** null stays null (e.g. "no limit" when the default is null), anything else through `inner`. */
  nullable<T>(inner: Validator<T>): Validator<T | null> {
    return (value, name) => (value === null ? null : inner(value, name));
  },
  /** A non-negative USD amount (number or decimal string) as exact units of 1e-8 USD. */
  nonNegativeUsd(): Validator<bigint> {
    return (value, name) => {
      if (typeof value !== 'number' && typeof value !== 'string') {
        return fail(name, 'a USD amount (number or decimal string)', value);
      }
      try {
        return parseCostUsd(value, name);
      } catch (err) {
        if (err instanceof MoneyError) throw new BillingConfigError(name, err.message);
        throw err;
      }
    };
  },
  /** An IANA time zone name the runtime knows (Intl), e.g. "UTC" or "Europe/Berlin". */
  timezone(): Validator<string> {
    return (value, name) => {
      if (typeof value !== 'string' || value === '') return fail(name, 'an IANA time zone name', value);
      try {
        new Intl.DateTimeFormat('en-US', { timeZone: value });
      } catch {
        return fail(name, 'an IANA time zone name', value);
      }
      return value;
    };
  },
};

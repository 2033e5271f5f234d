// Unit tests for lib/options.ts: unknown keys, typed errors naming the option path, defaults, freezing.
import { expect } from 'chai';
import { BillingConfigError, parseOptions, v, type OptionValidators } from '../../lib/options.js';

interface Demo {
  retries: number;
  mode: 'fast' | 'safe';
  verbose: boolean;
  label?: string;
}

const DEFAULTS: Readonly<Demo> = Object.freeze({ retries: 3, mode: 'safe', verbose: false });
const VALIDATORS: OptionValidators<Demo> = {
  retries: v.nonNegativeInt(10),
  mode: v.oneOf('fast', 'safe'),
  verbose: v.boolean(),
  label: v.optional(v.nonEmptyString()),
};

function parse(input: unknown): Readonly<Demo> {
  return parseOptions<Demo>('demo', input, DEFAULTS, VALIDATORS);
}

function configError(fn: () => unknown): BillingConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(BillingConfigError);
    return err as BillingConfigError;
  }
  throw new Error('expected a BillingConfigError');
}

describe('options: parseOptions', () => {
  it('undefined input gives all defaults', () => {
    expect(parse(undefined)).to.deep.equal({ retries: 3, mode: 'safe', verbose: false, label: undefined });
  });

  it('an undefined or null value means the default; given values win', () => {
    expect(parse({ retries: undefined, mode: null, verbose: true, label: 'x' })).to.deep.equal({
      retries: 3,
      mode: 'safe',
      verbose: true,
      label: 'x',
    });
    expect(parse({ retries: 0 }).retries).to.equal(0);
  });

  it('names an unknown key with its scope and lists the valid ones', () => {
    const err = configError(() => parse({ retires: 2 }));
    expect(err.option).to.equal('demo.retires');
    expect(err.message).to.equal('Unknown option demo.retires; valid options are: retries, mode, verbose, label');
  });

  it('names a wrong type with the option path and the bad value', () => {
    const err = configError(() => parse({ retries: '2' }));
    expect(err.option).to.equal('demo.retries');
    expect(err.message).to.equal('demo.retries must be a non-negative integer ≤ 10, got "2"');
    expect(configError(() => parse({ mode: 'slow' })).message).to.equal('demo.mode must be one of "fast", "safe", got "slow"');
    expect(configError(() => parse({ verbose: 1 })).message).to.equal('demo.verbose must be a boolean, got 1');
    expect(configError(() => parse({ label: '' })).option).to.equal('demo.label');
  });

  it('rejects input that is not a plain object, naming the scope', () => {
    for (const bad of [null, 5, 'x', [], new Map()]) {
      const err = configError(() => parse(bad));
      expect(err.option).to.equal('demo');
      expect(err.message).to.match(/^demo must be a plain object, got /);
    }
    expect(parse(Object.create(null) as object).retries).to.equal(3);
  });

  it('validates defaults too, so a required option without a default fails loudly', () => {
    const err = configError(() =>
      parseOptions<{ store: object }>('core', {}, { store: undefined } as unknown as { store: object }, { store: v.object<object>('get') }),
    );
    expect(err.message).to.equal('core.store must be an object with get(), got undefined');
  });

  it('returns a frozen object and leaves the defaults and the input untouched', () => {
    const defaults = { retries: 3, mode: 'safe' as const, verbose: false };
    const input = { verbose: true };
    const result = parseOptions<Demo>('demo', input, defaults, VALIDATORS);
    expect(Object.isFrozen(result)).to.equal(true);
    expect(() => {
      (result as Demo).retries = 9;
    }).to.throw(TypeError);
    expect(defaults).to.deep.equal({ retries: 3, mode: 'safe', verbose: false });
    expect(input).to.deep.equal({ verbose: true });
    expect(result).to.not.equal(input);
  });

  it('uses the bare key as the path when the scope is empty', () => {
    expect(configError(() => parseOptions<Demo>('', { x: 1 }, DEFAULTS, VALIDATORS)).option).to.equal('x');
  });
});

describe('options: validators', () => {
  it('positiveInt and nonNegativeInt reject fractions, NaN, negatives and out-of-range values', () => {
    const positive = v.positiveInt();
    expect(positive(1, 'n')).to.equal(1);
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 53, '1', null]) {
      expect(() => positive(bad, 'n')).to.throw(BillingConfigError, /^n must be a positive integer, got /);
    }
    expect(v.nonNegativeInt()(0, 'n')).to.equal(0);
    expect(() => v.positiveInt(5)(6, 'n')).to.throw('n must be a positive integer ≤ 5, got 6');
  });

  it('string, func and object check their kinds; object checks the named methods', () => {
    expect(v.string()('', 's')).to.equal('');
    expect(() => v.string()(1, 's')).to.throw('s must be a string, got 1');
    const fn = () => 1;
    expect(v.func<() => number>()(fn, 'f')).to.equal(fn);
    expect(() => v.func()({}, 'f')).to.throw('f must be a function, got an object');
    const clock = { now: () => 0 };
    expect(v.object<typeof clock>('now')(clock, 'clock')).to.equal(clock);
    expect(() => v.object('now')({ now: 1 }, 'clock')).to.throw('clock must be an object with now(), got an object');
    expect(() => v.object()([], 'o')).to.throw('o must be an object, got an array');
  });

  it('optional and nullable pass their empty value through and check anything else', () => {
    expect(v.optional(v.boolean())(undefined, 'b')).to.equal(undefined);
    expect(v.optional(v.boolean())(null, 'b')).to.equal(undefined);
    expect(() => v.optional(v.boolean())('yes', 'b')).to.throw('b must be a boolean, got "yes"');
    expect(v.nullable(v.positiveInt())(null, 'n')).to.equal(null);
    expect(() => v.nullable(v.positiveInt())(undefined, 'n')).to.throw('n must be a positive integer, got undefined');
  });

  it('nonNegativeUsd parses exactly and names the option on bad amounts', () => {
    expect(v.nonNegativeUsd()('0.000001', 'reserve')).to.equal(100n);
    expect(v.nonNegativeUsd()(0.1, 'reserve')).to.equal(10_000_000n);
    expect(() => v.nonNegativeUsd()('-1', 'reserve')).to.throw(BillingConfigError, 'reserve must not be negative, got "-1"');
    const err = configError(() => v.nonNegativeUsd()('abc', 'reserve'));
    expect(err.option).to.equal('reserve');
    expect(err.message).to.contain('reserve');
    expect(() => v.nonNegativeUsd()({}, 'reserve')).to.throw('reserve must be a USD amount (number or decimal string), got an object');
  });

  it('timezone accepts IANA names and rejects unknown ones', () => {
    expect(v.timezone()('Europe/Berlin', 'tz')).to.equal('Europe/Berlin');
    expect(() => v.timezone()('Mars/Olympus', 'tz')).to.throw('tz must be an IANA time zone name, got "Mars/Olympus"');
  });
});

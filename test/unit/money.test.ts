// Unit tests for lib/money.ts: exact parsing, arithmetic, rounding and range errors.
import { expect } from 'chai';
import fc from 'fast-check';
import { formatUsd, multiplyUsd, parseCostUsd, parseLimitUsd, parseUsd, sumUsd, compareUsd, MAX_USD_UNITS, MoneyError } from '../../lib/money.js';

describe('money', () => {
  it('0.1 + 0.2 equals 0.3 exactly', () => {
    expect(parseUsd(0.1) + parseUsd(0.2)).to.equal(parseUsd('0.3'));
    expect(formatUsd(parseUsd(0.1) + parseUsd('0.2'))).to.equal('0.30000000');
  });

  it('100,000 random additions equal the decimal sum', () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const strings: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      const cents = Math.floor(random() * 10_000_000_000);
      strings.push(`${Math.floor(cents / 1e8)}.${String(cents % 1e8).padStart(8, '0')}`);
    }
    const total = sumUsd(strings.map((s) => parseUsd(s)));
    // Reference: integer sum of the digit strings with the point removed.
    const reference = strings.reduce((acc, s) => acc + BigInt(s.replace('.', '')), 0n);
    expect(total).to.equal(reference);
  });

  it('parses numbers, strings, exponents and signs', () => {
    expect(formatUsd(parseUsd('12.5'))).to.equal('12.50000000');
    expect(formatUsd(parseUsd(' 7 '))).to.equal('7.00000000');
    expect(formatUsd(parseUsd('1e-8'))).to.equal('0.00000001');
    expect(formatUsd(parseUsd(1e-7))).to.equal('0.00000010');
    expect(formatUsd(parseUsd('-3.25'))).to.equal('-3.25000000');
    expect(formatUsd(parseUsd('.5'))).to.equal('0.50000000');
    expect(formatUsd(parseUsd('2.'))).to.equal('2.00000000');
    expect(formatUsd(parseUsd('1.5E3'))).to.equal('1500.00000000');
    expect(formatUsd(0n)).to.equal('0.00000000');
  });

  it('rounds half away from zero at the 8th place', () => {
    expect(parseUsd('0.000000005')).to.equal(1n);
    expect(parseUsd('0.0000000049999')).to.equal(0n);
    expect(parseUsd('-0.000000005')).to.equal(-1n);
    expect(parseUsd('1.123456785')).to.equal(112345679n);
    expect(multiplyUsd(1n, '0.5')).to.equal(1n);
    expect(multiplyUsd(-1n, '0.5')).to.equal(-1n);
    expect(multiplyUsd(3n, '0.49')).to.equal(1n);
    expect(multiplyUsd(parseUsd('3'), '0.000001')).to.equal(300n);
    expect(multiplyUsd(parseUsd('10'), 1.5)).to.equal(parseUsd('15'));
  });

  it('rejects NaN, infinities, non-numeric strings and out-of-range values, naming the value', () => {
    expect(() => parseUsd(NaN)).to.throw(/finite.*NaN/);
    expect(() => parseUsd(Infinity)).to.throw(/Infinity/);
    expect(() => parseUsd(-Infinity)).to.throw(/-Infinity/);
    expect(() => parseUsd('abc')).to.throw(/"abc"/);
    expect(() => parseUsd('')).to.throw(/decimal/);
    expect(() => parseUsd('1,5')).to.throw(/"1,5"/);
    expect(() => parseUsd('0x10')).to.throw(/"0x10"/);
    expect(() => parseUsd('100000000')).to.throw(/out of range.*"100000000"/);
    expect(() => parseUsd('1e400')).to.throw(/out of range/);
    expect(() => parseUsd({} as unknown as string)).to.throw(/number or a decimal string/);
    expect(() => multiplyUsd(1n, 'x')).to.throw(/rate/);
    expect(parseUsd(`${String(MAX_USD_UNITS)}e-8`)).to.equal(MAX_USD_UNITS);
  });

  it('refuses a bigint, saying what to pass instead: 10n could mean $10 or 10 units of 1e-8', () => {
    for (const parse of [
      (v: unknown) => parseUsd(v as string, 'costUsd'),
      (v: unknown) => parseCostUsd(v as string),
      (v: unknown) => parseLimitUsd(v as string, 'costUsd'),
    ]) {
      expect(() => parse(10n)).to.throw(MoneyError, /costUsd must be a number or a decimal string of USD .* not a bigint/);
    }
  });

  it('costs must not be negative', () => {
    expect(() => parseCostUsd('-0.01')).to.throw(/costUsd must not be negative/);
    expect(parseCostUsd('0')).to.equal(0n);
    expect(parseCostUsd('-0')).to.equal(0n);
    expect(parseCostUsd(-0)).to.equal(0n);
  });

  it('a negative cost of any size is refused, never rounded to zero (regression: "-0.000000001" and -1e-9 settled as 0)', () => {
    expect(() => parseCostUsd('-0.000000001')).to.throw(MoneyError, /must not be negative/);
    expect(() => parseCostUsd(-1e-9)).to.throw(MoneyError, /must not be negative/);
    expect(() => parseCostUsd('-1e-30')).to.throw(MoneyError, /must not be negative/);
    fc.assert(
      fc.property(fc.double({ max: -Number.MIN_VALUE, min: -1e6, noNaN: true }), (negative) => {
        expect(() => parseCostUsd(negative)).to.throw(MoneyError, /must not be negative/);
        expect(() => parseCostUsd(String(negative))).to.throw(MoneyError, /must not be negative/);
      }),
    );
  });

  it('a limit that would round to 0 is refused rather than read as 0 (which blocks a platform quota)', () => {
    expect(() => parseLimitUsd('0.000000001', 'dailyLimitUsd')).to.throw(MoneyError, /dailyLimitUsd is below 0.00000001 USD/);
    expect(() => parseLimitUsd(4e-9, 'dailyLimitUsd')).to.throw(MoneyError, /below 0.00000001/);
    expect(parseLimitUsd('0', 'dailyLimitUsd')).to.equal(0n);
    expect(parseLimitUsd('0.000000005', 'dailyLimitUsd')).to.equal(1n);
    expect(() => parseLimitUsd('-0.000000001', 'dailyLimitUsd')).to.throw(MoneyError, /must not be negative/);
  });

  it('compares', () => {
    expect(compareUsd(1n, 2n)).to.equal(-1);
    expect(compareUsd(2n, 2n)).to.equal(0);
    expect(compareUsd(3n, 2n)).to.equal(1);
  });
});

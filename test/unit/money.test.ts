// Unit tests for lib/money.ts: exact parsing, arithmetic, rounding and range errors.
import { expect } from 'chai';
import { formatUsd, multiplyUsd, parseCostUsd, parseUsd, sumUsd, compareUsd, MAX_USD_UNITS } from '../../lib/money.js';

describe('money', () => {
  it('0.1 + 0.2 equals 0.3 exactly', () => {
    expect(parseUsd(0.1) + parseUsd(0.2)).to.equal(parseUsd('0.3'));
    expect(formatUsd(parseUsd(0.1) + parseUsd('0.2'))).to.equal('0.30000000');
  });

  it('100,000 random additions equal the decimal sum', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
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
    expect(parseUsd(MAX_USD_UNITS)).to.equal(MAX_USD_UNITS);
  });

  it('costs must not be negative', () => {
    expect(() => parseCostUsd('-0.01')).to.throw(/costUsd must not be negative/);
    expect(parseCostUsd('0')).to.equal(0n);
  });

  it('compares', () => {
    expect(compareUsd(1n, 2n)).to.equal(-1);
    expect(compareUsd(2n, 2n)).to.equal(0);
    expect(compareUsd(3n, 2n)).to.equal(1);
  });
});

// Unit tests for the limits of a subject (lib/subject.ts): what is a cap, what is none, and that
// anything else is refused naming the field, never read as some other limit.
import { expect } from 'chai';
import fc from 'fast-check';
import { normalizeSubject } from '../../lib/subject.js';
import { BillingValidationError } from '../../lib/validate.js';
import type { BillingSubject } from '../../lib/types.js';

const withCaps = (user: unknown, key: unknown): BillingSubject =>
  ({ user: { id: 'u1', maxConcurrency: user }, apiKey: { id: 'k1', maxConcurrency: key } }) as unknown as BillingSubject;

describe('subject: concurrency caps', () => {
  it('null, absent and 0 mean unlimited; a positive integer is the cap', () => {
    expect(normalizeSubject(withCaps(undefined, null))).to.include({ userMaxConcurrency: 0, apiKeyMaxConcurrency: 0 });
    expect(normalizeSubject(withCaps(0, 0))).to.include({ userMaxConcurrency: 0, apiKeyMaxConcurrency: 0 });
    expect(normalizeSubject(withCaps(10, 3))).to.include({ userMaxConcurrency: 10, apiKeyMaxConcurrency: 3 });
  });

  it('an object whose String() throws is refused naming the field, not with a TypeError of its own (found by the property below)', () => {
    for (const hostile of [
      { toString: '' },
      Object.create(null),
      {
        [Symbol.toPrimitive]: () => {
          throw new Error('boom');
        },
      },
    ]) {
      expect(() => normalizeSubject(withCaps(hostile, 1))).to.throw(
        BillingValidationError,
        'subject.user.maxConcurrency must be a non-negative integer or null, got object',
      );
      const rpm = { user: { id: 'u1', rpmLimit: hostile } } as unknown as BillingSubject;
      expect(() => normalizeSubject(rpm)).to.throw(BillingValidationError, 'subject.user.rpmLimit must be an integer (≤ 0: none), got object');
    }
  });

  it('anything but a non-negative safe integer is refused, naming the field', () => {
    const notACap = fc.oneof(
      fc.integer({ max: -1 }),
      fc.double().filter((d) => !Number.isSafeInteger(d)),
      fc.string(),
      fc.boolean(),
      fc.constant(2 ** 53),
      fc.object(),
    );
    fc.assert(
      fc.property(notACap, fc.boolean(), (value, onKey) => {
        const subject = onKey ? withCaps(1, value) : withCaps(value, 1);
        expect(() => normalizeSubject(subject)).to.throw(BillingValidationError, onKey ? 'subject.apiKey.maxConcurrency' : 'subject.user.maxConcurrency');
      }),
    );
  });
});

describe('subject: RPM caps and group USD limits ≤ 0 mean none, as the reference gate reads them', () => {
  const subject = (user: object, group: object = {}): BillingSubject =>
    ({ user: { id: 'u1', ...user }, group: { id: 'g1', billingType: 'standard', ...group } }) as unknown as BillingSubject;

  it('an RPM cap ≤ 0 is no cap, an override ≤ 0 exempts from the group cap (regression: a negative one was 400 INVALID_SUBJECT)', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1_000_000, max: 0 }), (value) => {
        expect(normalizeSubject(subject({ rpmLimit: value, groupRpmOverride: value }, { rpmLimit: value }))).to.include({
          userRpmLimit: 0,
          groupRpmLimit: 0,
          groupRpmOverride: 0,
        });
      }),
    );
    expect(normalizeSubject(subject({ rpmLimit: 7, groupRpmOverride: null }, { rpmLimit: 3 }))).to.include({
      userRpmLimit: 7,
      groupRpmLimit: 3,
      groupRpmOverride: null,
    });
  });

  it('an RPM value that is not an integer at all is still refused, naming the field', () => {
    for (const bad of [1.5, Number.NaN, Infinity, '10', true]) {
      expect(() => normalizeSubject(subject({ rpmLimit: bad })), String(bad)).to.throw(BillingValidationError, 'subject.user.rpmLimit');
      expect(() => normalizeSubject(subject({}, { rpmLimit: bad })), String(bad)).to.throw(BillingValidationError, 'subject.group.rpmLimit');
    }
  });

  it('a group USD limit ≤ 0 is no limit; one that is not an amount is refused', () => {
    for (const none of ['-1', -0.5, '0', 0, '-0.000000001']) {
      expect(normalizeSubject(subject({}, { dailyLimitUsd: none, weeklyLimitUsd: none, monthlyLimitUsd: none })).groupLimits, String(none)).to.deep.equal({
        daily: null,
        weekly: null,
        monthly: null,
      });
    }
    expect(() => normalizeSubject(subject({}, { dailyLimitUsd: 'lots' }))).to.throw(/subject.group.dailyLimitUsd/);
  });

  it('a key USD limit must not be negative, however little (0 = none)', () => {
    const key = (rateLimit5h: unknown) => ({ user: { id: 'u1' }, apiKey: { id: 'k1', rateLimit5h } }) as unknown as BillingSubject;
    expect(() => normalizeSubject(key('-0.000000001'))).to.throw(/subject.apiKey.rateLimit5h must not be negative/);
    expect(() => normalizeSubject(key(-1))).to.throw(/subject.apiKey.rateLimit5h must not be negative/);
    expect(normalizeSubject(key('0')).apiKeyLimits).to.equal(null);
  });
});

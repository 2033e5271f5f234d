// Unit tests for the concurrency caps of a subject (lib/subject.ts): what is a cap, what is none, and
// that anything else is refused naming the field, never read as some other cap.
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

  it('anything but a non-negative safe integer is refused, naming the field', () => {
    const notACap = fc.oneof(
      fc.integer({ max: -1 }),
      fc.double().filter((d) => !Number.isSafeInteger(d)),
      fc.string(),
      fc.boolean(),
      fc.constant(2 ** 53),
      fc.object(),
    );
    fc.assert(fc.property(notACap, fc.boolean(), (value, onKey) => {
      const subject = onKey ? withCaps(1, value) : withCaps(value, 1);
      expect(() => normalizeSubject(subject)).to.throw(BillingValidationError, onKey ? 'subject.apiKey.maxConcurrency' : 'subject.user.maxConcurrency');
    }));
  });
});

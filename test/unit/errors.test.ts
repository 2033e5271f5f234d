// Unit tests for lib/errors.ts: the catalogue's statuses and types, and BillingError's fields and headers.
import { expect } from 'chai';
import { BILLING_ERROR_CATALOGUE, BillingError, DEFAULT_RETRY_AFTER_SEC, type BillingErrorCode } from '../../lib/errors.js';

const CODES = Object.keys(BILLING_ERROR_CATALOGUE) as BillingErrorCode[];
const RATE_LIMITED: BillingErrorCode[] = [
  'DAILY_LIMIT_EXCEEDED',
  'WEEKLY_LIMIT_EXCEEDED',
  'MONTHLY_LIMIT_EXCEEDED',
  'USER_PLATFORM_DAILY_QUOTA_EXHAUSTED',
  'USER_PLATFORM_WEEKLY_QUOTA_EXHAUSTED',
  'USER_PLATFORM_MONTHLY_QUOTA_EXHAUSTED',
  'API_KEY_RATE_5H_EXCEEDED',
  'API_KEY_RATE_1D_EXCEEDED',
  'API_KEY_RATE_7D_EXCEEDED',
  'GROUP_RPM_EXCEEDED',
  'USER_RPM_EXCEEDED',
  'CONCURRENCY_LIMIT_EXCEEDED',
];
const DENIALS: BillingErrorCode[] = ['BILLING_SUBJECT_NOT_FOUND', 'INSUFFICIENT_BALANCE', 'SUBSCRIPTION_INVALID'];

describe('errors: catalogue', () => {
  it('lists exactly the eighteen codes of the spec', () => {
    expect(CODES).to.have.members([...RATE_LIMITED, ...DENIALS, 'BILLING_SERVICE_ERROR', 'SETTLEMENT_CONFLICT', 'INVALID_SUBJECT']);
    expect(CODES).to.have.length(18);
    expect(Object.isFrozen(BILLING_ERROR_CATALOGUE)).to.equal(true);
  });

  it('window, quota and RPM codes are retryable 429 rate_limit_error', () => {
    for (const code of RATE_LIMITED) {
      expect(BILLING_ERROR_CATALOGUE[code], code).to.include({ status: 429, type: 'rate_limit_error', retryable: true });
    }
  });

  it('denials are non-retryable 403s with OpenAI types', () => {
    expect(BILLING_ERROR_CATALOGUE.INSUFFICIENT_BALANCE).to.include({ status: 403, type: 'insufficient_quota', retryable: false });
    expect(BILLING_ERROR_CATALOGUE.SUBSCRIPTION_INVALID).to.include({ status: 403, type: 'permission_error', retryable: false });
    expect(BILLING_ERROR_CATALOGUE.BILLING_SUBJECT_NOT_FOUND).to.include({ status: 403, type: 'permission_error', retryable: false });
  });

  it('service, conflict and invalid-subject entries', () => {
    expect(BILLING_ERROR_CATALOGUE.BILLING_SERVICE_ERROR).to.deep.equal({
      status: 503,
      message: 'Billing service temporarily unavailable. Please retry later.',
      type: 'api_error',
      retryable: true,
    });
    expect(BILLING_ERROR_CATALOGUE.SETTLEMENT_CONFLICT).to.include({ status: 409, type: 'conflict_error', retryable: false });
    expect(BILLING_ERROR_CATALOGUE.INVALID_SUBJECT).to.include({ status: 400, type: 'invalid_request_error', retryable: false });
  });

  it('every message is short, non-empty client text', () => {
    for (const code of CODES) {
      const { message } = BILLING_ERROR_CATALOGUE[code];
      expect(message, code).to.match(/^[A-Z].{10,100}\.$/);
    }
  });
});

describe('errors: BillingError', () => {
  it('carries code, status, expose and the catalogue message', () => {
    const error = new BillingError('INSUFFICIENT_BALANCE');
    expect(error).to.be.instanceOf(Error);
    expect(error.name).to.equal('BillingError');
    expect(error.code).to.equal('INSUFFICIENT_BALANCE');
    expect(error.status).to.equal(403);
    expect(error.expose).to.equal(true);
    expect(error.message).to.equal(BILLING_ERROR_CATALOGUE.INSUFFICIENT_BALANCE.message);
    expect(error.retryAfter).to.equal(undefined);
    expect(error.metadata).to.equal(undefined);
    expect(new BillingError('BILLING_SERVICE_ERROR').expose).to.equal(false);
  });

  it('a custom message replaces the catalogue text', () => {
    expect(new BillingError('INVALID_SUBJECT', { message: 'Invalid billing subject: user.id' }).message).to.equal('Invalid billing subject: user.id');
  });

  it('rounds retryAfter up to whole seconds, at least 1', () => {
    const cases: [number, number][] = [
      [0.2, 1],
      [1, 1],
      [1.5, 2],
      [59.001, 60],
      [0, 1],
      [-3, 1],
      [3600, 3600],
    ];
    for (const [given, expected] of cases) {
      const error = new BillingError('USER_RPM_EXCEEDED', { retryAfter: given });
      expect(error.retryAfter, String(given)).to.equal(expected);
      expect(error.headers['Retry-After'], String(given)).to.equal(String(expected));
    }
  });

  it('a 429 without a usable retryAfter still carries Retry-After (the 60 s fallback)', () => {
    for (const retryAfter of [undefined, Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = new BillingError('DAILY_LIMIT_EXCEEDED', { retryAfter });
      expect(error.retryAfter).to.equal(DEFAULT_RETRY_AFTER_SEC);
      expect(error.headers).to.deep.equal({ 'Retry-After': '60' });
    }
  });

  it('a wait longer than the SDKs honour (60 s) also says x-should-retry: false, so they stop instead of retrying at once', () => {
    expect(new BillingError('DAILY_LIMIT_EXCEEDED', { retryAfter: 60 }).headers).to.deep.equal({ 'Retry-After': '60' });
    expect(new BillingError('DAILY_LIMIT_EXCEEDED', { retryAfter: 60.5 }).headers).to.deep.equal({ 'Retry-After': '61', 'x-should-retry': 'false' });
    expect(new BillingError('USER_PLATFORM_WEEKLY_QUOTA_EXHAUSTED', { retryAfter: 3 * 86_400 }).headers).to.deep.equal({
      'Retry-After': '259200',
      'x-should-retry': 'false',
    });
    expect(new BillingError('USER_RPM_EXCEEDED', { retryAfter: 12 }).headers).to.deep.equal({ 'Retry-After': '12' });
  });

  it('non-retryable denials carry x-should-retry: false and no Retry-After', () => {
    for (const code of [...DENIALS, 'SETTLEMENT_CONFLICT', 'INVALID_SUBJECT'] as BillingErrorCode[]) {
      expect(new BillingError(code, { retryAfter: 5 }).headers, code).to.deep.equal({ 'x-should-retry': 'false' });
    }
  });

  it('a 503 has Retry-After only when one is given', () => {
    expect(new BillingError('BILLING_SERVICE_ERROR').headers).to.deep.equal({});
    expect(new BillingError('BILLING_SERVICE_ERROR', { retryAfter: 29.2 }).headers).to.deep.equal({ 'Retry-After': '30' });
  });

  it('keeps the cause and a frozen copy of the metadata', () => {
    const cause = new Error('ECONNREFUSED 127.0.0.1:5432');
    const metadata = { windowResetsAt: '2024-06-13T00:00:00.000Z' };
    const error = new BillingError('BILLING_SERVICE_ERROR', { cause, metadata });
    expect(error.cause).to.equal(cause);
    expect(error.message).to.not.include('ECONNREFUSED');
    metadata.windowResetsAt = 'changed';
    expect(error.metadata).to.deep.equal({ windowResetsAt: '2024-06-13T00:00:00.000Z' });
    expect(Object.isFrozen(error.metadata)).to.equal(true);
    expect(Object.isFrozen(error.headers)).to.equal(true);
    expect('cause' in new BillingError('BILLING_SERVICE_ERROR')).to.equal(false);
  });

  it('rejects an unknown code, naming it', () => {
    expect(() => new BillingError('NOPE' as BillingErrorCode)).to.throw(TypeError, /"NOPE"/);
    expect(() => new BillingError('toString' as BillingErrorCode)).to.throw(TypeError, /"toString"/);
  });

  it('is() recognises billing errors, also from another copy of the package', () => {
    expect(BillingError.is(new BillingError('USER_RPM_EXCEEDED'))).to.equal(true);
    expect(BillingError.is(new Error('USER_RPM_EXCEEDED'))).to.equal(false);
    expect(BillingError.is({ code: 'USER_RPM_EXCEEDED', status: 429 })).to.equal(false);
    expect(BillingError.is(null)).to.equal(false);
    const foreign = Object.assign(new Error('x'), { [Symbol.for('koa-billing-eligibility.BillingError')]: true });
    expect(BillingError.is(foreign)).to.equal(true);
  });
});

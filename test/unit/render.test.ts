// Unit tests for lib/render.ts: OpenAI and Anthropic bodies, statuses and headers, and that internals never leak.
import { expect } from 'chai';
import { BILLING_ERROR_CATALOGUE, BillingError, type BillingErrorCode } from '../../lib/errors.js';
import { assertErrorFormat, renderBillingError, renderUnknownError, type ErrorFormat } from '../../lib/render.js';

const CODES = Object.keys(BILLING_ERROR_CATALOGUE) as BillingErrorCode[];
const FORMATS: ErrorFormat[] = ['openai', 'anthropic'];

// Expected per code: [status, OpenAI type, Anthropic type, headers kind].
function expectation(code: BillingErrorCode): { status: number; openai: string; anthropic: string; headers: 'retry' | 'no-retry' | 'none' } {
  if (code === 'BILLING_SERVICE_ERROR') return { status: 503, openai: 'api_error', anthropic: 'api_error', headers: 'none' };
  if (code === 'INSUFFICIENT_BALANCE') return { status: 403, openai: 'insufficient_quota', anthropic: 'permission_error', headers: 'no-retry' };
  if (code === 'SUBSCRIPTION_INVALID' || code === 'BILLING_SUBJECT_NOT_FOUND') {
    return { status: 403, openai: 'permission_error', anthropic: 'permission_error', headers: 'no-retry' };
  }
  if (code === 'SETTLEMENT_CONFLICT') return { status: 409, openai: 'conflict_error', anthropic: 'invalid_request_error', headers: 'no-retry' };
  if (code === 'INVALID_SUBJECT') return { status: 400, openai: 'invalid_request_error', anthropic: 'invalid_request_error', headers: 'no-retry' };
  return { status: 429, openai: 'rate_limit_error', anthropic: 'rate_limit_error', headers: 'retry' };
}

describe('render: every code in both formats', () => {
  for (const code of CODES) {
    it(code, () => {
      const want = expectation(code);
      const error = new BillingError(code, { retryAfter: want.headers === 'retry' ? 12.3 : undefined });
      const openai = renderBillingError(error, 'openai');
      expect(openai.status).to.equal(want.status);
      expect(openai.body).to.deep.equal({ error: { type: want.openai, code: code.toLowerCase(), message: error.message } });
      const anthropic = renderBillingError(error, 'anthropic');
      expect(anthropic.status).to.equal(want.status);
      expect(anthropic.body).to.deep.equal({ type: 'error', error: { type: want.anthropic, message: error.message } });
      for (const rendered of [openai, anthropic]) {
        if (want.headers === 'retry') expect(rendered.headers).to.deep.equal({ 'Retry-After': '13' });
        if (want.headers === 'no-retry') expect(rendered.headers).to.deep.equal({ 'x-should-retry': 'false' });
        if (want.headers === 'none') expect(rendered.headers).to.deep.equal({});
      }
    });
  }

  it('the OpenAI code is the catalogue code in lower case', () => {
    const body = renderBillingError(new BillingError('INSUFFICIENT_BALANCE'), 'openai').body as { error: { code: string } };
    expect(body.error.code).to.equal('insufficient_balance');
  });
});

describe('render: Retry-After', () => {
  it('is a whole number of seconds, at least 1', () => {
    const cases: [number, string][] = [
      [0.2, '1'],
      [1.5, '2'],
      [0, '1'],
      [42, '42'],
    ];
    for (const format of FORMATS) {
      for (const [retryAfter, header] of cases) {
        const rendered = renderBillingError(new BillingError('API_KEY_RATE_5H_EXCEEDED', { retryAfter }), format);
        expect(rendered.headers['Retry-After'], `${format} ${retryAfter}`).to.equal(header);
        expect(rendered.headers['Retry-After']).to.match(/^[1-9]\d*$/);
      }
    }
  });

  it('the rendered headers are a copy the caller may change', () => {
    const error = new BillingError('USER_RPM_EXCEEDED', { retryAfter: 3 });
    const rendered = renderBillingError(error, 'openai');
    rendered.headers['x-extra'] = '1';
    expect(error.headers).to.deep.equal({ 'Retry-After': '3' });
  });
});

describe('render: internal causes never reach the client', () => {
  const internals = [
    new Error('connect ECONNREFUSED 127.0.0.1:5432'),
    Object.assign(new Error('syntax error at or near "SELEC"'), { code: '42601', detail: 'secret detail' }),
    new Error('ReplyError: NOSCRIPT No matching script. Please use EVAL.'),
  ];
  const leaks = /ECONNREFUSED|127\.0\.0\.1|5432|syntax error|SELEC|42601|secret|NOSCRIPT|ReplyError|at Object\.|\.ts:\d+/;

  function expectClean(value: unknown, label: string): void {
    expect(JSON.stringify(value), label).to.not.match(leaks);
  }

  it('unknown errors render as BILLING_SERVICE_ERROR 503 without their message', () => {
    for (const format of FORMATS) {
      for (const cause of [...internals, 'raw string ECONNREFUSED', { message: 'syntax error at or near' }, undefined]) {
        const rendered = renderUnknownError(cause, format);
        expect(rendered.status).to.equal(503);
        const message = BILLING_ERROR_CATALOGUE.BILLING_SERVICE_ERROR.message;
        expect(rendered.body).to.deep.equal(
          format === 'openai'
            ? { error: { type: 'api_error', code: 'billing_service_error', message } }
            : { type: 'error', error: { type: 'api_error', message } },
        );
        expectClean(rendered, `${format} ${String(cause)}`);
      }
    }
  });

  it('a BillingError wrapping a cause renders without it', () => {
    for (const format of FORMATS) {
      for (const cause of internals) {
        const error = new BillingError('BILLING_SERVICE_ERROR', { cause, metadata: { reason: 'store' } });
        expectClean(renderBillingError(error, format), format);
        expectClean(renderUnknownError(error, format), format);
      }
    }
  });

  it('a 503 whose message was built from an internal error still shows the catalogue text', () => {
    const error = new BillingError('BILLING_SERVICE_ERROR', { message: 'connect ECONNREFUSED 127.0.0.1:5432' });
    for (const format of FORMATS) {
      const rendered = renderBillingError(error, format);
      expectClean(rendered, format);
      expect(JSON.stringify(rendered.body)).to.include('Billing service temporarily unavailable');
    }
  });

  it('a BillingError passed to renderUnknownError renders as itself', () => {
    const rendered = renderUnknownError(new BillingError('GROUP_RPM_EXCEEDED', { retryAfter: 7 }), 'openai');
    expect(rendered.status).to.equal(429);
    expect(rendered.headers).to.deep.equal({ 'Retry-After': '7' });
  });
});

describe('render: formats', () => {
  it('assertErrorFormat accepts the built-in formats and names the option otherwise', () => {
    expect(assertErrorFormat('openai')).to.equal('openai');
    expect(assertErrorFormat('anthropic')).to.equal('anthropic');
    expect(() => assertErrorFormat('xml', 'options.format')).to.throw(TypeError, /options\.format.*"xml"/);
    expect(() => renderBillingError(new BillingError('USER_RPM_EXCEEDED'), 'xml' as ErrorFormat)).to.throw(TypeError, /"xml"/);
  });
});

// Unit tests for the decision records: evaluations in exact units, formatted into public records on demand.
import { expect } from 'chai';
import { DecisionLog } from '../../lib/billing-request.js';
import { decideBalance, toCheckRecord, type CheckEvaluation } from '../../lib/decisions.js';
import { MAX_USD_UNITS, parseUsd } from '../../lib/money.js';

const quota: CheckEvaluation = {
  check: 'platformQuota',
  outcome: 'allowed',
  source: 'cache',
  windows: [
    { window: 'daily', usd: true, limit: parseUsd('5'), usage: parseUsd('1.25'), resetsAtMs: 1_000 },
    { window: 'weekly', usd: true, limit: null, usage: -1n, resetsAtMs: null },
    { window: 'monthly', usd: true, limit: MAX_USD_UNITS, usage: 0n, resetsAtMs: 2_000 },
  ],
};

describe('decision records', () => {
  it('formats USD windows as 8-place decimal strings and RPM windows as counts', () => {
    expect(toCheckRecord(quota)).to.deep.equal({
      check: 'platformQuota',
      outcome: 'allowed',
      source: 'cache',
      windows: [
        { window: 'daily', limit: '5.00000000', usage: '1.25000000', resetsAtMs: 1_000 },
        { window: 'weekly', limit: null, usage: '-0.00000001', resetsAtMs: null },
        { window: 'monthly', limit: '90071992.54740991', usage: '0.00000000', resetsAtMs: 2_000 },
      ],
    });
    expect(
      toCheckRecord({
        check: 'rpm',
        outcome: 'denied',
        code: 'USER_RPM_EXCEEDED',
        windows: [{ window: 'user', usd: false, limit: 60, usage: 61, resetsAtMs: 3_000 }],
      }),
    ).to.deep.equal({ check: 'rpm', outcome: 'denied', code: 'USER_RPM_EXCEEDED', windows: [{ window: 'user', limit: '60', usage: '61', resetsAtMs: 3_000 }] });
  });

  it('keeps records without windows as they are', () => {
    expect(toCheckRecord({ check: 'rpm', outcome: 'skipped', reason: 'no_caps' })).to.deep.equal({ check: 'rpm', outcome: 'skipped', reason: 'no_caps' });
  });

  it('formats each evaluation once, when checks is first read, and follows later evaluations', () => {
    const log = new DecisionLog();
    log.evaluations.push(decideBalance(parseUsd('10'), parseUsd('0.000001'), 'cache') as CheckEvaluation);
    const first = log.checks;
    expect(first).to.have.length(1);
    expect(first[0]?.windows?.[0]).to.deep.equal({ window: 'balance', limit: '0.00000100', usage: '10.00000000', resetsAtMs: null });
    log.evaluations.push(quota);
    expect(log.checks).to.equal(first, 'the same array, extended');
    expect(log.checks.map((r) => r.check)).to.deep.equal(['balance', 'platformQuota']);
    expect(log.checks[0]).to.equal(first[0], 'not formatted again');
  });

  it('serialises as { allowed, checks } with the formatted records', () => {
    const log = new DecisionLog();
    log.evaluations.push(quota);
    log.allowed = false;
    expect(JSON.parse(JSON.stringify(log))).to.deep.equal({ allowed: false, checks: [toCheckRecord(quota)] });
  });
});

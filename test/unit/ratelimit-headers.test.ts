// Unit tests for lib/ratelimit-headers.ts: every field parsed as a Structured Field List, quota units
// from the draft's registry only, values against limits and window ends (docs/ratelimit-fields.md).
import { expect } from 'chai';
import { CheckDenial, decideApiKeyWindows, decideBalance, decidePlatformQuota, type CheckEvaluation } from '../../lib/decisions.js';
import { MAX_USD_UNITS, parseUsd } from '../../lib/money.js';
import { parseList as parseStructuredList } from 'structured-headers';
import { buildRateLimitHeaders, CONCURRENT_REQUESTS_UNIT } from '../../lib/ratelimit-headers.js';
import type { ApiKeyWindowsEntity, PlatformQuotaEntity, TimeContext } from '../../lib/types.js';

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0); // a Wednesday
const HOUR = 3_600_000;

interface Member {
  name: string;
  params: Record<string, number | string>;
}

/** The draft's RateLimit Quota Units registry; a policy without `qu` counts requests. */
const REGISTERED_UNITS = ['requests', 'content-bytes', 'concurrent-requests'];

/**
 * Parses a field as an RFC 9651 List (structured-headers), and checks the shape every field here
 * has: String members whose parameters are Integers (≤ 15 digits) or Strings.
 */
function parseList(field: string): Member[] {
  return parseStructuredList(field).map(([item, parameters]) => {
    expect(item, `member of ${field}`).to.be.a('string');
    const params: Record<string, number | string> = {};
    for (const [key, value] of parameters) {
      expect(Number.isInteger(value) || typeof value === 'string', `${key}=${String(value)} in ${field}`).to.equal(true);
      params[key] = value as number | string;
    }
    return { name: item as string, params };
  });
}

type Fields = NonNullable<ReturnType<typeof buildRateLimitHeaders>>;

/** Both families parsed, with the draft's per-parameter rules checked on each. */
function parse(records: readonly CheckEvaluation[], nowMs = NOW) {
  const fields = buildRateLimitHeaders(records, nowMs);
  if (fields === null) throw new Error('expected RateLimit fields, got null');
  const list = (field: keyof Fields) => (fields[field] === undefined ? [] : parseList(fields[field]));
  const checkPolicy = ({ name, params }: Member) => {
    expect(params.q, `${name} q`).to.be.a('number').that.is.at.least(0); // REQUIRED, non-negative Integer
    if ('w' in params) expect(params.w, `${name} w`).to.be.a('number').that.is.above(0); // non-zero Integer seconds
  };
  const checkLimit = ({ name, params }: Member) => {
    expect(params.r, `${name} r`).to.be.a('number');
    if ('t' in params) expect(params.t, `${name} t`).to.be.a('number').that.is.at.least(0);
  };
  const requests = { policies: list('RateLimit-Policy'), limits: list('RateLimit') };
  requests.policies.forEach(checkPolicy);
  requests.limits.forEach(checkLimit);
  for (const { name, params } of requests.policies) expect(REGISTERED_UNITS, `${name} qu`).to.include(params.qu ?? 'requests');
  for (const { name, params } of requests.limits) expect(params.r, `${name} r`).to.be.at.least(0);
  // Every member of RateLimit refers to an advertised policy, in the same order.
  expect(requests.limits.map((m) => m.name)).to.deep.equal(requests.policies.map((m) => m.name));
  // Billing-Spend is the package's own: each member carries its policy (q, w) with its state (r, t),
  // amounts in micro-dollars, no `qu`; the balance, a stock, has r alone.
  const spendMembers = list('Billing-Spend');
  const split = (keys: string[]) =>
    spendMembers.map(({ name, params }) => ({ name, params: Object.fromEntries(Object.entries(params).filter(([k]) => keys.includes(k))) }));
  const spend = { policies: split(['q', 'w', 'qu']).filter((m) => m.name !== 'balance'), limits: split(['r', 't']) };
  for (const { name, params } of spendMembers) {
    expect(Object.keys(params), name).to.deep.equal(name === 'balance' ? ['r'] : 't' in params ? ['q', 'w', 'r', 't'] : ['q', 'w', 'r']);
  }
  spend.policies.forEach(checkPolicy);
  spend.limits.forEach(checkLimit);
  const byName = (members: Member[]) => Object.fromEntries(members.map((m) => [m.name, m.params]));
  return {
    fields,
    policies: byName([...spend.policies, ...requests.policies]),
    limits: byName([...spend.limits, ...requests.limits]),
    names: [...spend.limits, ...requests.limits].map((m) => m.name),
  };
}

function rpmRecord(outcome: CheckEvaluation['outcome'], windows: [string, number, number][], resetsAtMs: number): CheckEvaluation {
  return {
    check: 'rpm',
    outcome,
    source: 'cache',
    windows: windows.map(([window, limit, usage]) => ({ window, usd: false, limit, usage, resetsAtMs })),
  };
}

function recordOf(result: CheckEvaluation | CheckDenial): CheckEvaluation {
  return result instanceof CheckDenial ? result.record : result;
}

function keyEntity(over: Partial<ApiKeyWindowsEntity> = {}): ApiKeyWindowsEntity {
  return { version: 1, usage5h: 0n, usage1d: 0n, usage7d: 0n, start5hMs: null, start1dMs: null, start7dMs: null, ...over };
}

function quotaEntity(over: Partial<PlatformQuotaEntity> = {}): PlatformQuotaEntity {
  return {
    version: 1,
    sentinel: false,
    dailyLimit: null,
    weeklyLimit: null,
    monthlyLimit: null,
    dailyUsage: 0n,
    weeklyUsage: 0n,
    monthlyUsage: 0n,
    dailyStartMs: null,
    weeklyStartMs: null,
    monthlyStartMs: null,
    ...over,
  };
}

describe('buildRateLimitHeaders', () => {
  const utc: TimeContext = { nowMs: NOW, timezone: 'UTC' };

  it('advertises one named policy per RPM cap, in requests (no qu), with remaining requests and seconds to the bucket end', () => {
    const { fields, policies, limits } = parse([
      rpmRecord(
        'allowed',
        [
          ['group', 10, 3],
          ['user', 5, 3],
        ],
        NOW + 42_000,
      ),
    ]);
    expect(fields).to.deep.equal({
      'RateLimit-Policy': '"rpm-group";q=10;w=60, "rpm-user";q=5;w=60',
      RateLimit: '"rpm-group";r=7;t=42, "rpm-user";r=2;t=42',
    });
    expect(policies['rpm-user']).not.to.have.property('qu'); // the draft's default unit is requests
    expect(limits['rpm-group']).to.deep.equal({ r: 7, t: 42 });
  });

  it('shows r=0 on a denied RPM request, whose count went past the cap', () => {
    const { limits } = parse([rpmRecord('denied', [['user', 5, 6]], NOW + 1_000)]);
    expect(limits['rpm-user']).to.deep.equal({ r: 0, t: 1 });
  });

  it('rounds t up to whole seconds, never below 0, and caps the RPM t at one bucket against clock skew', () => {
    expect(parse([rpmRecord('allowed', [['user', 5, 1]], NOW + 41_001)]).limits['rpm-user']?.t).to.equal(42);
    expect(parse([rpmRecord('allowed', [['user', 5, 1]], NOW - 2_500)]).limits['rpm-user']?.t).to.equal(0);
    expect(parse([rpmRecord('allowed', [['user', 5, 1]], NOW + 75_000)]).limits['rpm-user']?.t).to.equal(60);
  });

  it('advertises the key windows in Billing-Spend, in micro-dollars, with w = window length and t = seconds to the window end', () => {
    const start5h = NOW - 2 * HOUR - 30_000;
    const record = recordOf(
      decideApiKeyWindows(
        keyEntity({ usage5h: parseUsd('1.23456789'), start5hMs: start5h, usage1d: parseUsd('2'), start1dMs: Date.UTC(2025, 0, 15) }),
        { limit5h: parseUsd('5'), limit1d: parseUsd('20'), limit7d: 0n },
        utc,
        'cache',
      ),
    );
    expect(record.outcome).to.equal('allowed');
    const { names, policies, limits } = parse([record]);
    expect(names).to.deep.equal(['key-5h', 'key-1d']); // 7d has no limit (0 = unlimited)
    expect(policies['key-5h']).to.deep.equal({ q: 5_000_000, w: 5 * 3600 });
    expect(policies['key-1d']).to.deep.equal({ q: 20_000_000, w: 86_400 });
    // 5 − 1.23456789 = 3.76543211 USD → 3765432 micro-dollars, rounded down.
    expect(limits['key-5h']).to.deep.equal({ r: 3_765_432, t: (start5h + 5 * HOUR - NOW) / 1000 });
    // 1 d is anchored at the start of the day of first use, so it ends at the next midnight.
    expect(limits['key-1d']).to.deep.equal({ r: 18_000_000, t: (Date.UTC(2025, 0, 16) - NOW) / 1000 });
  });

  it('shows the exhausted window of a denial with r=0 and the same t as its Retry-After', () => {
    const start5h = NOW - HOUR;
    const denial = decideApiKeyWindows(
      keyEntity({ usage5h: parseUsd('5.5'), start5hMs: start5h }),
      { limit5h: parseUsd('5'), limit1d: 0n, limit7d: parseUsd('100') },
      utc,
      'cache',
    );
    expect(denial).to.be.instanceOf(CheckDenial);
    const { limits, policies } = parse([recordOf(denial)]);
    expect(limits['key-5h']).to.deep.equal({ r: 0, t: 4 * 3600 });
    expect((denial as CheckDenial).error.retryAfter).to.equal(limits['key-5h']?.t);
    // A never-used 7-day window: full quota, and a reset a whole window away.
    expect(policies['key-7d']).to.deep.equal({ q: 100_000_000, w: 604_800 });
    expect(limits['key-7d']?.r).to.equal(100_000_000);
  });

  it("names platform-quota windows, blocks with q=0 for a zero limit, and uses the zone's real day length for t", () => {
    // Europe/Berlin springs forward on 2025-03-30: that local day has 23 hours.
    const nowMs = Date.UTC(2025, 2, 29, 23, 30); // 00:30 local on the 30th
    const time: TimeContext = { nowMs, timezone: 'Europe/Berlin' };
    const record = recordOf(
      decidePlatformQuota(
        quotaEntity({ dailyLimit: parseUsd('2'), dailyUsage: parseUsd('0.5'), dailyStartMs: Date.UTC(2025, 2, 29, 23), weeklyLimit: 0n }),
        time,
        'cache',
      ),
    );
    expect(record.outcome).to.equal('denied'); // weekly limit 0 = fully blocked
    const { names, policies, limits } = parse([record], nowMs);
    expect(names).to.deep.equal(['quota-daily', 'quota-weekly']);
    expect(policies['quota-daily']?.w).to.equal(86_400); // nominal
    expect(limits['quota-daily']).to.deep.equal({ r: 1_500_000, t: 22.5 * 3600 }); // next local midnight is 22:00Z
    expect(policies['quota-weekly']).to.deep.equal({ q: 0, w: 604_800 });
    expect(limits['quota-weekly']?.r).to.equal(0);
  });

  it('lists every applicable policy of a whole chain in check order, the balance as a stock in Billing-Spend only', () => {
    const balance = recordOf(decideBalance(parseUsd('10'), parseUsd('0.000001'), 'cache'));
    const subscription: CheckEvaluation = {
      check: 'subscription',
      outcome: 'allowed',
      windows: [
        { window: 'daily', usd: true, limit: parseUsd('1'), usage: parseUsd('0.25'), resetsAtMs: NOW + 12 * HOUR },
        { window: 'weekly', usd: true, limit: null, usage: parseUsd('3'), resetsAtMs: null },
        { window: 'monthly', usd: true, limit: parseUsd('30'), usage: parseUsd('31'), resetsAtMs: NOW + 10 * 24 * HOUR },
      ],
    };
    const { names, policies, limits } = parse([
      { check: 'breaker', outcome: 'allowed' },
      balance,
      subscription,
      { check: 'apiKeyWindows', outcome: 'skipped', reason: 'no_limits' },
      rpmRecord('allowed', [['user', 60, 1]], NOW + 30_000),
    ]);
    expect(names).to.deep.equal(['balance', 'sub-daily', 'sub-monthly', 'rpm-user']);
    expect(limits.balance).to.deep.equal({ r: 10_000_000 });
    expect(policies).not.to.have.property('balance');
    expect(policies['sub-monthly']).to.deep.equal({ q: 30_000_000, w: 30 * 86_400 });
    expect(limits['sub-daily']).to.deep.equal({ r: 750_000, t: 12 * 3600 });
    expect(limits['sub-monthly']).to.deep.equal({ r: 0, t: 10 * 86_400 }); // overdrawn: never negative
  });

  it('returns null when nothing applies', () => {
    expect(buildRateLimitHeaders([], NOW)).to.equal(null);
    expect(
      buildRateLimitHeaders(
        [
          { check: 'breaker', outcome: 'allowed' },
          { check: 'platformQuota', outcome: 'allowed', reason: 'no_quota', source: 'store' },
          recordOf(decidePlatformQuota(quotaEntity({ sentinel: true }), utc, 'cache')), // all limits null
          { check: 'rpm', outcome: 'skipped', reason: 'no_caps' },
          { check: 'rpm', outcome: 'failed_open', reason: 'error', source: 'none' },
        ],
        NOW,
      ),
    ).to.equal(null);
  });

  it('advertises the largest amount the package accepts as a structured-field Integer', () => {
    const { policies, limits } = parse([
      {
        check: 'apiKeyWindows',
        outcome: 'allowed',
        windows: [{ window: '7d', usd: true, limit: MAX_USD_UNITS, usage: 0n, resetsAtMs: NOW + 1000 }],
      },
    ]);
    expect(policies['key-7d']?.q).to.equal(90_071_992_547_409);
    expect(limits['key-7d']?.r).to.equal(90_071_992_547_409);
  });

  it('rounds remaining micro-dollars down, so a client never plans on money it does not have', () => {
    const { limits } = parse([
      {
        check: 'apiKeyWindows',
        outcome: 'allowed',
        windows: [{ window: '5h', usd: true, limit: 300n, usage: 101n, resetsAtMs: NOW + 1000 }],
      },
    ]);
    expect(limits['key-5h']?.r).to.equal(1); // 1.99 micro-dollars left
  });

  it('leaves out a window it cannot express instead of emitting a field clients must ignore whole', () => {
    const fields = buildRateLimitHeaders(
      [
        {
          check: 'apiKeyWindows',
          outcome: 'allowed',
          windows: [
            // Beyond what lib/money.ts accepts, so beyond exact number arithmetic.
            { window: '5h', usd: true, limit: MAX_USD_UNITS + 1n, usage: 0n, resetsAtMs: NOW + 1000 },
            { window: '1d', usd: true, limit: parseUsd('1'), usage: 0n, resetsAtMs: Number.NaN },
            { window: '30d', usd: true, limit: parseUsd('1'), usage: 0n, resetsAtMs: NOW + 1000 },
          ],
        },
        rpmRecord('allowed', [['user', 1e16, 1]], NOW + 1000),
      ],
      NOW,
    );
    // t is optional in the draft: an unknown reset time drops only t.
    expect(fields).to.deep.equal({ 'Billing-Spend': '"key-1d";q=1000000;w=86400;r=1000000' });
  });

  it('advertises each policy once even if a check was recorded twice', () => {
    const { fields } = parse([rpmRecord('allowed', [['user', 5, 1]], NOW + 10_000), rpmRecord('allowed', [['user', 5, 2]], NOW + 10_000)]);
    expect(fields.RateLimit).to.equal('"rpm-user";r=4;t=10');
  });

  it('repeats the last policy field while limits stay the same, and builds it anew when one changes', () => {
    const policy = (userCap: number, groupCap?: number) => {
      const windows: [string, number, number][] = [['user', userCap, 1]];
      if (groupCap !== undefined) windows.unshift(['group', groupCap, 1]);
      return buildRateLimitHeaders([rpmRecord('allowed', windows, NOW + 10_000)], NOW)!['RateLimit-Policy'];
    };
    expect(policy(5)).to.equal('"rpm-user";q=5;w=60');
    expect(policy(5)).to.equal('"rpm-user";q=5;w=60');
    expect(policy(6)).to.equal('"rpm-user";q=6;w=60');
    expect(policy(6, 6)).to.equal('"rpm-group";q=6;w=60, "rpm-user";q=6;w=60');
    expect(policy(6)).to.equal('"rpm-user";q=6;w=60');
    expect(policy(5)).to.equal('"rpm-user";q=5;w=60');
  });

  it("computes each window's remaining amount anew whenever its limit or usage differs from the call before", () => {
    const usd = (limit: bigint, usage: bigint): CheckEvaluation => ({
      check: 'apiKeyWindows',
      outcome: 'allowed',
      source: 'cache',
      windows: [{ window: '1d', usd: true, limit, usage, resetsAtMs: null }],
    });
    const remaining = (record: CheckEvaluation) => {
      const fields = buildRateLimitHeaders([record], NOW);
      return fields?.['Billing-Spend'] ?? fields?.RateLimit ?? 'left out';
    };
    const dollars = (text: string) => parseUsd(text);
    expect(remaining(usd(dollars('5'), dollars('1')))).to.equal('"key-1d";q=5000000;w=86400;r=4000000');
    expect(remaining(usd(dollars('5'), dollars('1')))).to.equal('"key-1d";q=5000000;w=86400;r=4000000');
    expect(remaining(usd(dollars('5'), dollars('2')))).to.equal('"key-1d";q=5000000;w=86400;r=3000000');
    expect(remaining(usd(dollars('6'), dollars('2')))).to.equal('"key-1d";q=6000000;w=86400;r=4000000');
    // Too large to be a structured-field Integer in micro-dollars: left out, then back once it fits.
    expect(remaining(usd(MAX_USD_UNITS * 1000n, 0n))).to.equal('left out');
    expect(remaining(usd(MAX_USD_UNITS * 1000n, 0n))).to.equal('left out');
    expect(remaining(usd(dollars('6'), dollars('2')))).to.equal('"key-1d";q=6000000;w=86400;r=4000000');
    expect(remaining(rpmRecord('allowed', [['user', 5, 1]], NOW))).to.equal('"rpm-user";r=4;t=0');
    expect(remaining(rpmRecord('allowed', [['user', 5, 2]], NOW))).to.equal('"rpm-user";r=3;t=0');
  });

  it('reuses the last value up to the first member that differs, and never a stale member after it', () => {
    const key = (usage1d: bigint, resetsAtMs: number | null): CheckEvaluation => ({
      check: 'apiKeyWindows',
      outcome: 'allowed',
      source: 'cache',
      windows: [
        { window: '5h', usd: true, limit: 500n, usage: 100n, resetsAtMs: NOW + 9_000 },
        { window: '1d', usd: true, limit: 500n, usage: usage1d, resetsAtMs },
      ],
    });
    // Both families in one string, spend | requests, to follow the reuse across them.
    const limits = (records: CheckEvaluation[], nowMs = NOW) => {
      const fields = buildRateLimitHeaders(records, nowMs);
      return [fields?.['Billing-Spend'], fields?.RateLimit].filter((f) => f !== undefined).join(' | ');
    };
    const rpm = (count: number) => rpmRecord('allowed', [['user', 9, count]], NOW + 5_000);
    expect(limits([key(200n, NOW + 2_000), rpm(1)])).to.equal('"key-5h";q=5;w=18000;r=4;t=9, "key-1d";q=5;w=86400;r=3;t=2 | "rpm-user";r=8;t=5');
    // Last member changes (the warm path: RPM counts on every request).
    expect(limits([key(200n, NOW + 2_000), rpm(2)])).to.equal('"key-5h";q=5;w=18000;r=4;t=9, "key-1d";q=5;w=86400;r=3;t=2 | "rpm-user";r=7;t=5');
    // A middle member's amount, then its t, then t left out; the members after it are rebuilt each time.
    expect(limits([key(300n, NOW + 2_000), rpm(2)])).to.equal('"key-5h";q=5;w=18000;r=4;t=9, "key-1d";q=5;w=86400;r=2;t=2 | "rpm-user";r=7;t=5');
    expect(limits([key(300n, NOW + 3_000), rpm(2)])).to.equal('"key-5h";q=5;w=18000;r=4;t=9, "key-1d";q=5;w=86400;r=2;t=3 | "rpm-user";r=7;t=5');
    expect(limits([key(300n, null), rpm(2)])).to.equal('"key-5h";q=5;w=18000;r=4;t=9, "key-1d";q=5;w=86400;r=2 | "rpm-user";r=7;t=5');
    // The first member's t moves with the clock: nothing after it is taken from the last value.
    expect(limits([key(300n, null), rpm(2)], NOW - 1_000)).to.equal('"key-5h";q=5;w=18000;r=4;t=10, "key-1d";q=5;w=86400;r=2 | "rpm-user";r=7;t=6');
    // Fewer members, then more again.
    expect(limits([key(300n, null)], NOW - 1_000)).to.equal('"key-5h";q=5;w=18000;r=4;t=10, "key-1d";q=5;w=86400;r=2');
    expect(limits([key(300n, null), rpm(3)], NOW - 1_000)).to.equal('"key-5h";q=5;w=18000;r=4;t=10, "key-1d";q=5;w=86400;r=2 | "rpm-user";r=6;t=6');
    // Another policy in a position a different one held before.
    expect(limits([rpm(3)], NOW - 1_000)).to.equal('"rpm-user";r=6;t=6');
    expect(limits([key(300n, null)], NOW - 1_000)).to.equal('"key-5h";q=5;w=18000;r=4;t=10, "key-1d";q=5;w=86400;r=2');
  });

  it('advertises concurrency caps in concurrent-requests, the registered unit, with no window and no reset', () => {
    const record: CheckEvaluation = {
      check: 'concurrency',
      outcome: 'allowed',
      source: 'cache',
      windows: [
        { window: 'user', usd: false, limit: 4, usage: 3, resetsAtMs: null },
        { window: 'apiKey', usd: false, limit: 2, usage: 2, resetsAtMs: null },
      ],
    };
    const { fields, policies, limits } = parse([record, rpmRecord('allowed', [['user', 5, 1]], NOW + 1_000)]);
    expect(policies['conc-user']).to.deep.equal({ q: 4, qu: CONCURRENT_REQUESTS_UNIT });
    expect(limits['conc-user']).to.deep.equal({ r: 1 });
    expect(limits['conc-key']).to.deep.equal({ r: 0 });
    expect(fields).not.to.have.property('Billing-Spend');
  });

  it('sends an overdrawn balance as a negative stock, rounded down, and a balance alone in Billing-Spend only', () => {
    const { fields, limits } = parse([recordOf(decideBalance(-150n, 0n, 'cache'))]);
    expect(limits.balance).to.deep.equal({ r: -2 });
    expect(fields).to.deep.equal({ 'Billing-Spend': '"balance";r=-2' });
  });

  it('sends only the families asked for', () => {
    const records = [recordOf(decideBalance(parseUsd('3'), 0n, 'cache')), rpmRecord('allowed', [['user', 5, 1]], NOW + 1_000)];
    expect(Object.keys(buildRateLimitHeaders(records, NOW, { requests: true, spend: false })!)).to.deep.equal(['RateLimit-Policy', 'RateLimit']);
    expect(Object.keys(buildRateLimitHeaders(records, NOW, { requests: false, spend: true })!)).to.deep.equal(['Billing-Spend']);
    expect(buildRateLimitHeaders(records, NOW, { requests: false, spend: false })).to.equal(null);
  });

  it('refuses a nowMs that is not a time', () => {
    expect(() => buildRateLimitHeaders([], Number.NaN)).to.throw(TypeError, /nowMs/);
  });
});

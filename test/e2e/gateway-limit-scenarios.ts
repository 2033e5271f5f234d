// E2E scenarios about limits that must hold under concurrency, shared by every backend: a platform quota
// whose cache entry is cold, request bodies that try to make the reservation smaller than the answer,
// and a user's concurrency cap under long streams.
import { expect } from 'chai';
import { formatUsd, parseUsd } from '../../lib/index.js';
import http from 'node:http';
import type { GatewayHarness, TestUser } from './gateway-harness.js';

const PROMPT = 'Say hello to the billing test.';

const anthropicBody = (fields: object = {}) => ({
  model: 'claude-3-5-haiku-latest',
  max_tokens: 100,
  messages: [{ role: 'user', content: PROMPT }],
  ...fields,
});

const openaiBody = (fields: object) => ({ model: 'gpt-4o', messages: [{ role: 'user', content: PROMPT }], ...fields });

function openaiCall(h: GatewayHarness, user: TestUser, fields: object) {
  return h.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(openaiBody(fields));
}

function anthropicCall(h: GatewayHarness, user: TestUser, fields: object = {}) {
  return h.http().post('/v1/messages').set('x-api-key', user.key).set('anthropic-version', '2023-06-01').send(anthropicBody(fields));
}

/** The user's settled charges, summed, in units. */
async function chargedUnits(h: GatewayHarness, user: TestUser): Promise<{ total: bigint; largest: bigint; count: number }> {
  const rows = await h.gateway.core.listUsage(user.userId, 200);
  let total = 0n;
  let largest = 0n;
  for (const row of rows) {
    const cost = parseUsd(row.costUsd);
    total += cost;
    if (cost > largest) largest = cost;
  }
  return { total, largest, count: rows.length };
}

/** Waits until every settlement the gateway started has been stored. */
async function settled(h: GatewayHarness): Promise<void> {
  await h.gateway.inFlight.idle();
  await h.gateway.settlements.idle();
}

export function limitScenarios(harness: () => GatewayHarness): void {
  it('an exhausted platform quota whose cache entry was dropped admits 0 of 50 concurrent requests', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '10.00' });
    await h.admin('put', `/admin/users/${user.userId}/platform-quotas/anthropic`, { dailyLimitUsd: '0.01' }).expect(200);
    const subject = { user: { id: user.userId }, apiKey: { id: user.keyId }, platform: 'anthropic' };
    await h.gateway.core.settle({ requestId: `used-${user.userId}`, subject, costUsd: '0.01' });
    await h.gateway.core.invalidatePlatformQuota(user.userId, 'anthropic');
    const upstreamBefore = h.gateway.mockUpstream?.stats.requests ?? 0;
    const statuses = await Promise.all(Array.from({ length: 50 }, () => anthropicCall(h, user).then((res) => res.status)));
    expect(statuses.filter((status) => status === 200)).to.have.length(0);
    expect(new Set(statuses)).to.deep.equal(new Set([429]));
    expect(h.gateway.mockUpstream?.stats.requests ?? 0).to.equal(upstreamBefore, 'no request reached the upstream');
  });

  it('a $0.01 daily quota with a cold cache entry under 200 concurrent requests ends at most one request over the limit', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '10.00' });
    await h.admin('put', `/admin/users/${user.userId}/platform-quotas/anthropic`, { dailyLimitUsd: '0.01' }).expect(200);
    await h.gateway.core.invalidatePlatformQuota(user.userId, 'anthropic');
    const statuses = await Promise.all(Array.from({ length: 200 }, () => anthropicCall(h, user).then((res) => res.status)));
    await settled(h);
    const { total, largest, count } = await chargedUnits(h, user);
    const admitted = statuses.filter((status) => status === 200).length;
    console.log(`      ${admitted} of 200 admitted, ${count} charged, quota usage ${formatUsd(total)} USD (limit 0.01, one request ≤ ${formatUsd(largest)})`);
    expect(admitted).to.be.greaterThan(0);
    expect(count).to.equal(admitted);
    expect(total <= parseUsd('0.01') + largest).to.equal(true, `usage ${formatUsd(total)} exceeds the limit by more than one request`);
    expect(statuses.filter((status) => status !== 200 && status !== 429)).to.deep.equal([]);
  });

  // The mock upstream honours max_tokens before max_completion_tokens, and answers n choices, as
  // an upstream may: the reservation must cover what it will do, whatever field the estimate reads.
  for (const [name, fields] of [
    ['max_completion_tokens: 1 beside max_tokens: 24', { max_completion_tokens: 1, max_tokens: 24 }],
    ['n: 3 with max_tokens: 24', { n: 3, max_tokens: 24 }],
  ] as const) {
    it(`${name}: 30 concurrent requests cannot spend more than a $0.005 balance`, async () => {
      const h = harness();
      const user = await h.createUser({ balanceUsd: '0.005' });
      const statuses = await Promise.all(Array.from({ length: 30 }, () => openaiCall(h, user, fields).then((res) => res.status)));
      await settled(h);
      const { total, largest, count } = await chargedUnits(h, user);
      const admitted = statuses.filter((status) => status === 200).length;
      const balance = await h.gateway.core.getBalance(user.userId);
      console.log(`      ${admitted} of 30 admitted, charged ${formatUsd(total)} USD (one request ${formatUsd(largest)}), balance ${balance}`);
      expect(admitted).to.be.greaterThan(0);
      expect(count).to.equal(admitted);
      expect(total <= parseUsd('0.005')).to.equal(true, `charged ${formatUsd(total)} on a 0.005 balance`);
      expect(parseUsd(balance!) >= 0n).to.equal(true, `balance ${balance}`);
      expect(statuses.filter((status) => status !== 200 && status !== 403)).to.deep.equal([]);
    });
  }

  it('a user capped at 2 requests in flight: a third stream is refused 429 while two run, and admitted once they end', async function () {
    this.timeout(30_000);
    const h = harness();
    const user = await h.createUser({ balanceUsd: '5.00', maxConcurrency: 2 });
    const base = await h.listen();
    // A long stream (1 ms per word of a reply of up to 1,500 words), answered on a real socket.
    const stream = () =>
      new Promise<{ status: number; firstByte: Promise<void>; done: Promise<string> }>((resolve, reject) => {
        const req = http.request(
          `${base}/v1/chat/completions`,
          { method: 'POST', headers: { authorization: `Bearer ${user.key}`, 'content-type': 'application/json' } },
          (res) => {
            let body = '';
            let first: () => void = () => {};
            const firstByte = new Promise<void>((r) => (first = r));
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => {
              body += chunk;
              first();
            });
            resolve({ status: res.statusCode ?? 0, firstByte, done: new Promise((r) => res.on('end', () => r(body))) });
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify(openaiBody({ model: 'gpt-4o-mini', stream: true, max_tokens: 1500 })));
      });
    const running = await Promise.all([stream(), stream()]);
    expect(running.map((r) => r.status)).to.deep.equal([200, 200]);
    await Promise.all(running.map((r) => r.firstByte));
    const third = await openaiCall(h, user, { model: 'gpt-4o-mini', max_tokens: 10 });
    expect(third.status).to.equal(429);
    expect(third.body.error).to.include({ code: 'concurrency_limit_exceeded', type: 'rate_limit_error' });
    expect(third.headers['retry-after']).to.equal('1');
    for (const r of running) expect(await r.done).to.match(/\[DONE\]/);
    await settled(h);
    expect((await openaiCall(h, user, { model: 'gpt-4o-mini', max_tokens: 10 })).status).to.equal(200);
    await settled(h);
    expect(await h.gateway.core.listReservations(user.userId)).to.deep.equal([]);
  });
}

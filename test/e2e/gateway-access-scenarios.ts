// E2E scenarios about who gets through, shared by every backend: exhausted balances, admin top-ups, RPM, quotas,
// authentication, request validation, the unbilled routes, health, and logs free of secrets.
import { expect } from 'chai';
import { parseList } from 'structured-headers';
import type { GatewayHarness, TestUser } from './gateway-harness.js';

const chat = { model: 'gpt-4o-mini', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] };
const message = { model: 'claude-3-5-haiku-latest', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] };

function upstreamCalls(h: GatewayHarness): number {
  return h.gateway.mockUpstream?.stats.requests ?? 0;
}

const openaiCall = (h: GatewayHarness, user: TestUser, body: object = chat) =>
  h.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(body);
const anthropicCall = (h: GatewayHarness, user: TestUser, body: object = message) =>
  h.http().post('/v1/messages').set('x-api-key', user.key).set('anthropic-version', '2023-06-01').send(body);

export function accessScenarios(harness: () => GatewayHarness): void {
  it('answers an exhausted balance with 403 in the route format, without calling the upstream', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '0' });
    const before = upstreamCalls(h);
    const openai = await openaiCall(h, user).expect(403);
    expect(openai.body).to.deep.include({ error: { type: 'insufficient_quota', code: 'insufficient_balance', message: openai.body.error.message } });
    expect(openai.headers['x-should-retry']).to.equal('false');
    const anthropic = await anthropicCall(h, user).expect(403);
    expect(anthropic.body.type).to.equal('error');
    expect(anthropic.body.error.type).to.equal('permission_error');
    expect(upstreamCalls(h)).to.equal(before);
    expect(await h.gateway.core.listUsage(user.userId, 5)).to.deep.equal([]);
  });

  it('lets a user through on the very next request after an admin top-up', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    await h.admin('put', `/admin/users/${user.userId}/balance`, { balanceUsd: '-0.5' }).expect(200);
    await openaiCall(h, user).expect(403);
    const topUp = await h.admin('post', `/admin/users/${user.userId}/top-up`, { amountUsd: '2.50' }).expect(200);
    expect(topUp.body).to.deep.equal({ userId: user.userId, balanceUsd: '2.00000000' });
    await openaiCall(h, user).expect(200);
  });

  it('answers RPM over the override with 429 and Retry-After, without calling the upstream', async () => {
    const h = harness();
    const user = await h.createUser();
    await h.admin('put', `/admin/users/${user.userId}/rpm-override`, { rpm: 1 }).expect(200);
    // With a cap of 1 the second request of a minute is refused; three tries cover a minute boundary.
    let refused: Awaited<ReturnType<typeof openaiCall>> | undefined;
    let callsBefore = 0;
    for (let i = 0; i < 3 && !refused; i++) {
      callsBefore = upstreamCalls(h);
      const res = await openaiCall(h, user);
      if (res.status === 429) refused = res;
      else expect(res.status).to.equal(200);
    }
    if (!refused) throw new Error('no 429 within three requests at 1 RPM');
    expect(refused.body.error).to.include({ type: 'rate_limit_error', code: 'group_rpm_exceeded' });
    const retryAfter = Number(refused.headers['retry-after']);
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).to.equal(true);
    expect(upstreamCalls(h)).to.equal(callsBefore);
  });

  it('never limits or charges GET /v1/models', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '0' });
    await h.admin('put', `/admin/users/${user.userId}/rpm-override`, { rpm: 1 }).expect(200);
    for (let i = 0; i < 4; i++) {
      const res = await h.http().get('/v1/models').set('Authorization', `Bearer ${user.key}`).expect(200);
      expect(res.body.data.map((m: { id: string }) => m.id)).to.include.members(['gpt-4o-mini', 'claude-3-5-haiku-latest']);
    }
    const anthropicStyle = await h.http().get('/v1/models').set('x-api-key', user.key).set('anthropic-version', '2023-06-01').expect(200);
    expect(anthropicStyle.body.data[0]).to.include({ type: 'model' });
    expect(await h.gateway.core.listUsage(user.userId, 5)).to.deep.equal([]);
    expect(await h.gateway.core.getBalance(user.userId)).to.equal('0.00000000');
  });

  it('shows the caller its balance, key windows and recent charges on GET /v1/usage', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    await openaiCall(h, user).expect(200);
    const res = await h.http().get('/v1/usage').set('Authorization', `Bearer ${user.key}`).expect(200);
    expect(res.body.user.id).to.equal(user.userId);
    expect(res.body.recent).to.have.length(1);
    expect(res.body.apiKey.id).to.equal(user.keyId);
    expect(res.body.apiKey.windows).to.have.length(3);
    // (1 × 0.15 + 4 × 0.60) / 1e6; the JSON answer was settled before it was sent, so the balance shows it.
    expect(res.body.recent[0]).to.include({ costUsd: '0.00000255', model: 'gpt-4o-mini' });
    expect(res.body.balanceUsd).to.equal('0.99999745');
  });

  it('refuses a wrong or missing admin token with 401', async () => {
    const h = harness();
    const wrong = await h.http().post('/admin/users/alice/top-up').set('Authorization', 'Bearer not-the-admin-token').send({ amountUsd: '1' }).expect(401);
    expect(wrong.body.error).to.include({ code: 'invalid_api_key' });
    await h.http().post('/admin/users/alice/top-up').send({ amountUsd: '1' }).expect(401);
    // A user key is not an admin token either.
    const user = await h.createUser();
    await h.http().put(`/admin/users/${user.userId}/balance`).set('Authorization', `Bearer ${user.key}`).send({ balanceUsd: '99' }).expect(401);
    expect(await h.gateway.core.getBalance(user.userId)).to.equal('1.00000000');
  });

  it('refuses unknown and disabled keys with 401 in the route format', async () => {
    const h = harness();
    const openai = await h.http().post('/v1/chat/completions').set('Authorization', 'Bearer sk-not-a-real-key-at-all').send(chat).expect(401);
    expect(openai.body.error).to.include({ type: 'invalid_request_error', code: 'invalid_api_key' });
    const anthropic = await h.http().post('/v1/messages').set('x-api-key', 'sk-not-a-real-key-at-all').send(message).expect(401);
    expect(anthropic.body).to.deep.include({ type: 'error' });
    expect(anthropic.body.error.type).to.equal('authentication_error');
    await h.http().post('/v1/chat/completions').send(chat).expect(401);

    const user = await h.createUser();
    // Served once first, so the key's lookup is cached: disabling it must still take effect at once.
    await openaiCall(h, user).expect(200);
    await h.admin('put', `/admin/keys/${user.keyId}/limits`, { enabled: false }).expect(200);
    await openaiCall(h, user).expect(401);
    await h.admin('put', `/admin/keys/${user.keyId}/limits`, { enabled: true }).expect(200);
    await openaiCall(h, user).expect(200);
  });

  it('refuses bad requests before billing: unknown model 400, bad JSON 400, oversized body 413', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    const before = upstreamCalls(h);
    const unknown = await openaiCall(h, user, { ...chat, model: 'gpt-99' }).expect(400);
    expect(unknown.body.error).to.include({ code: 'model_not_found' });
    // A model of the other API is not served on this route either.
    await openaiCall(h, user, { ...chat, model: 'claude-3-5-haiku-latest' }).expect(400);
    await h.http().post('/v1/messages').set('x-api-key', user.key).set('content-type', 'application/json').send('{"model":').expect(400);
    const big = { ...chat, messages: [{ role: 'user', content: 'x'.repeat(h.gateway.config.maxBodyBytes) }] };
    const tooLarge = await openaiCall(h, user, big).expect(413);
    expect(tooLarge.body.error).to.include({ code: 'request_too_large' });
    expect(upstreamCalls(h)).to.equal(before);
    expect(await h.gateway.core.listUsage(user.userId, 5)).to.deep.equal([]);
  });

  it('applies a platform quota set by the admin to its platform only', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    await h.admin('put', `/admin/users/${user.userId}/platform-quotas/anthropic`, { dailyLimitUsd: '0' }).expect(200);
    const denied = await anthropicCall(h, user).expect(429);
    expect(denied.body.error.type).to.equal('rate_limit_error');
    expect(Number(denied.headers['retry-after'])).to.be.at.least(1);
    await openaiCall(h, user).expect(200);
    await h.admin('put', `/admin/users/${user.userId}/platform-quotas/anthropic`, { dailyLimitUsd: null }).expect(200);
    await anthropicCall(h, user).expect(200);
  });

  it('reports the store and the cache on /healthz', async () => {
    const h = harness();
    const res = await h.http().get('/healthz').expect(200);
    expect(res.body).to.include({ status: 'ok', store: true });
    expect(res.body.cache).not.to.equal(false);
  });

  it('serves Prometheus metrics that move with decisions, with no per-user labels, and sends RateLimit fields', async () => {
    const h = harness();
    const user = await h.createUser({ rpmLimit: 30 });
    const allowed = await openaiCall(h, user).expect(200);
    const fields = (name: string) => parseList(String(allowed.headers[name])).map(([member, params]) => [member, Object.fromEntries(params)]);
    expect(fields('ratelimit-policy')).to.deep.equal([['rpm-user', { q: 30, w: 60 }]]);
    expect(fields('ratelimit')).to.have.length(1);
    expect(fields('ratelimit')[0]![1]).to.include({ r: 29 });
    // The balance left before this request's settlement, in micro-dollars, in the package's own field.
    expect(fields('billing-spend')[0]![0]).to.equal('balance');
    const text = (await h.http().get('/metrics').expect(200)).text;
    const allowedCount = /^billing_decisions_total\{check="balance",outcome="allowed"\} (\d+)/m.exec(text);
    expect(Number(allowedCount?.[1])).to.be.at.least(1);
    expect(text).to.match(/^billing_settlements_total\{result="stored"\} [1-9]/m);
    expect(text).to.not.include(user.userId);
    expect(text).to.not.include(user.key);
  });

  it('never writes a key or the admin token into the logs', async () => {
    const h = harness();
    const user = await h.createUser();
    await openaiCall(h, user).expect(200);
    await anthropicCall(h, user, { ...message, stream: true }).expect(200);
    await h.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}x`).send(chat).expect(401);
    await h.admin('post', `/admin/users/${user.userId}/top-up`, { amountUsd: '1' }).expect(200);
    expect(h.logs.join('')).to.include(user.userId);
    const all = h.logs.join('');
    for (const secret of [...h.secrets, `${user.key}x`]) expect(all.includes(secret), 'a secret in the logs').to.equal(false);
  });
}

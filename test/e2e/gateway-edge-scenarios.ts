// E2E scenarios at the example gateway's edges, shared by every backend: bodies nested too deep,
// concurrent creates of one user, token limits beyond any model, admin numbers outside their range or
// precision, references to groups that do not exist, and a malformed key told apart from a missing one.
import { expect } from 'chai';
import { ADMIN_TOKEN, type GatewayHarness } from './gateway-harness.js';

const deep = (levels: number) => `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x":${'['.repeat(levels)}${']'.repeat(levels)}}`;

export function edgeScenarios(harness: () => GatewayHarness): void {
  it('a body nested 5,000 levels deep is a clear 400 before any billing, on chat and admin routes (regression: 502 and 500)', async () => {
    const h = harness();
    const user = await h.createUser();
    const chat = await h
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .set('Content-Type', 'application/json')
      .send(deep(5000));
    expect(chat.status).to.equal(400);
    expect(chat.body.error.message).to.match(/nests deeper than 64 levels/);
    expect(await h.gateway.core.listUsage(user.userId)).to.deep.equal([]);
    const admin = await h
      .http()
      .post('/admin/users')
      .set('Authorization', `Bearer ${ADMIN_TOKEN}`)
      .set('Content-Type', 'application/json')
      .send(`{"id":"deep","name":${'['.repeat(5000)}${']'.repeat(5000)}}`);
    expect(admin.status).to.equal(400);
  });

  it('ten concurrent creates of one user id: one 201, the rest 409, never a 500 (regression: check-then-insert race)', async () => {
    const h = harness();
    const id = `race${Date.now().toString(36)}`;
    const statuses = await Promise.all(Array.from({ length: 10 }, () => h.admin('post', '/admin/users', { id, balanceUsd: '1' }).then((res) => res.status)));
    expect(statuses.filter((s) => s === 201)).to.have.length(1);
    expect(statuses.filter((s) => s === 409)).to.have.length(9);
  });

  it('a token limit beyond any model is refused naming the field the caller sent (regression: "Invalid billing input: rateMultiplier")', async () => {
    const h = harness();
    const user = await h.createUser();
    const res = await h
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send({ model: 'gpt-4o-mini', max_tokens: Number.MAX_SAFE_INTEGER, messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).to.equal(400);
    expect(res.body.error.message).to.equal('"max_tokens" must be an integer from 1 to 10000000.');
  });

  it('admin numbers are validated to their range and precision: fractional days, sub-unit and over-precise limits, unknown groups', async () => {
    const h = harness();
    const user = await h.createUser({ groupId: 'standard' });
    const fractionalDays = await h.admin('put', `/admin/users/${user.userId}/subscription`, { groupId: 'pro', days: 0.0001 });
    expect(fractionalDays.status).to.equal(400);
    expect(fractionalDays.body.error.message).to.match(/days must be a whole number from 1 to 3650/);
    const subUnit = await h.admin('put', `/admin/users/${user.userId}/platform-quotas/openai`, { dailyLimitUsd: '0.000000001' });
    expect(subUnit.status, 'a limit that would round to 0 (= blocked)').to.equal(400);
    expect(subUnit.body.error.message).to.match(/dailyLimitUsd/);
    const overPrecise = await h.admin('put', `/admin/users/${user.userId}/platform-quotas/openai`, { dailyLimitUsd: '1.123456789' });
    expect(overPrecise.status).to.equal(400);
    expect(overPrecise.body.error.message).to.match(/more than 8 decimal places/);
    expect((await h.admin('put', `/admin/users/${user.userId}/platform-quotas/openai`, { dailyLimitUsd: '1.12345678' })).status).to.equal(200);
    const unknownGroup = await h.admin('put', `/admin/users/${user.userId}/rpm-override`, { groupId: 'no-such-group', rpm: 5 });
    expect(unknownGroup.status).to.equal(400);
    expect(unknownGroup.body.error.message).to.match(/no group "no-such-group"/);
  });

  it('a malformed key is told apart from a missing one', async () => {
    const h = harness();
    const missing = await h
      .http()
      .post('/v1/chat/completions')
      .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(missing.status).to.equal(401);
    expect(missing.body.error.message).to.match(/^Missing API key/);
    const malformed = await h
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', 'Bearer short')
      .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(malformed.status).to.equal(401);
    expect(malformed.body.error.message).to.match(/^Malformed API key/);
  });
}

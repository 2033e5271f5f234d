// E2E scenarios about charging, shared by every backend: exact costs of JSON and streamed calls (both APIs),
// the rate multiplier, a client that disconnects mid-stream, and subscription billing.
import http from 'node:http';
import { expect } from 'chai';
import { formatUsd, parseUsd } from '../../lib/index.js';
import type { GatewayHarness, TestUser } from './gateway-harness.js';
import { waitFor } from './gateway-harness.js';

/** 30 characters: the mock (and the gateway's estimate) count ceil(30 / 4) = 8 prompt tokens. */
const PROMPT = 'Say hello to the billing test.';

const openaiBody = (fields: object = {}) => ({ model: 'gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: PROMPT }], ...fields });
const anthropicBody = (fields: object = {}) => ({ model: 'claude-3-5-haiku-latest', max_tokens: 12, messages: [{ role: 'user', content: PROMPT }], ...fields });

/** The SSE data payloads of a response body, JSON-parsed ([DONE] left out). */
function sseData(text: string): Record<string, unknown>[] {
  return text.split(/\n\n/).flatMap((event) =>
    event
      .split('\n')
      .filter((l) => l.startsWith('data: ') && l !== 'data: [DONE]')
      .map((l) => JSON.parse(l.slice(6))),
  );
}

async function usageOf(h: GatewayHarness, user: TestUser) {
  return h.gateway.core.listUsage(user.userId, 10);
}

export function billingScenarios(harness: () => GatewayHarness): void {
  it('charges a non-streamed OpenAI call exactly the price-table cost', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    const res = await h.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(openaiBody()).expect(200);
    expect(res.body.usage).to.include({ prompt_tokens: 8, completion_tokens: 10 });
    // (8 × 0.15 + 10 × 0.60) / 1e6 = 0.0000072 USD.
    const [entry] = await usageOf(h, user);
    expect(entry).to.include({ requestId: res.body.id, costUsd: '0.00000720', model: 'gpt-4o-mini', inputTokens: 8, outputTokens: 10, platform: 'openai' });
    expect(await h.gateway.core.getBalance(user.userId)).to.equal('0.99999280');
  });

  it('charges a streamed OpenAI call exactly, although the client did not ask for usage', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    const res = await h
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send(openaiBody({ stream: true }))
      .expect(200);
    expect(res.headers['content-type']).to.match(/^text\/event-stream/);
    expect(res.text.trimEnd().endsWith('data: [DONE]')).to.equal(true);
    const events = sseData(res.text);
    const content = events.flatMap((e) => (e.choices as { delta?: { content?: string } }[]).map((c) => c.delta?.content ?? '')).join('');
    expect(content.split(' ')).to.have.length(10);
    const entry = await waitFor(async () => (await usageOf(h, user))[0], 'the usage row');
    expect(entry).to.include({ requestId: events[0]?.id, costUsd: '0.00000720', inputTokens: 8, outputTokens: 10 });
    expect(await h.gateway.core.getBalance(user.userId)).to.equal('0.99999280');
  });

  it('charges a streamed Anthropic call exactly, times the group rate multiplier', async () => {
    const h = harness();
    const user = await h.createUser({ groupId: 'partner', balanceUsd: '1.00' });
    const res = await h
      .http()
      .post('/v1/messages')
      .set('x-api-key', user.key)
      .set('anthropic-version', '2023-06-01')
      .send(anthropicBody({ stream: true }))
      .expect(200);
    const types = sseData(res.text).map((e) => e.type);
    expect(types[0]).to.equal('message_start');
    expect(types.filter((t) => t === 'content_block_delta')).to.have.length(12);
    expect(types.at(-1)).to.equal('message_stop');
    // (8 × 0.80 + 12 × 4.00) / 1e6 × 0.8 = 0.00004352 USD.
    const entry = await waitFor(async () => (await usageOf(h, user))[0], 'the usage row');
    expect(entry).to.include({ costUsd: '0.00004352', inputTokens: 8, outputTokens: 12, platform: 'anthropic', mode: 'balance' });
    expect(await h.gateway.core.getBalance(user.userId)).to.equal('0.99995648');
  });

  it('charges a client that disconnects mid-stream for what the upstream reported', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    const base = await h.listen();
    const abortedBefore = h.gateway.mockUpstream?.stats.aborted ?? 0;
    const received = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        `${base}/v1/messages`,
        {
          method: 'POST',
          headers: { 'x-api-key': user.key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
            // Gone after a few words of a 4000-word answer: the relay must not have buffered it.
            if ((text.match(/content_block_delta/g) ?? []).length >= 3) {
              req.destroy();
              resolve(text);
            }
          });
          res.on('end', () => reject(new Error('the stream ended before the client disconnected')));
        },
      );
      req.on('error', () => undefined);
      req.end(JSON.stringify(anthropicBody({ stream: true, max_tokens: 4000 })));
    });
    expect(received).to.include('message_start');
    const entry = await waitFor(async () => (await usageOf(h, user))[0], 'the settlement of the cut stream');
    // The reported prompt (8 tokens) at least, and only part of the 4000-token answer.
    expect(entry.inputTokens).to.equal(8);
    expect(entry.outputTokens).to.be.at.least(1).and.below(4000);
    const promptCost = parseUsd('0.0000064');
    expect(parseUsd(entry.costUsd) >= promptCost).to.equal(true);
    expect(await h.gateway.core.getBalance(user.userId)).to.equal(formatUsd(parseUsd('1') - parseUsd(entry.costUsd)));
    // The upstream call was aborted too, not left generating for nobody.
    await waitFor(async () => ((h.gateway.mockUpstream?.stats.aborted ?? 0) > abortedBefore ? true : undefined), 'the upstream abort');
  });

  it('bills a subscription member against the plan, and refuses a revoked plan', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    const assigned = await h.admin('put', `/admin/users/${user.userId}/subscription`, { groupId: 'pro', days: 30 }).expect(200);
    expect(assigned.body).to.include({ userId: user.userId, groupId: 'pro', status: 'active' });
    await h.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(openaiBody()).expect(200);
    const [entry] = await usageOf(h, user);
    expect(entry).to.include({ mode: 'subscription', costUsd: '0.00000720' });
    expect(await h.gateway.core.getBalance(user.userId)).to.equal('1.00000000');

    await h.admin('put', `/admin/users/${user.userId}/subscription`, { groupId: 'pro', status: 'revoked' }).expect(200);
    const denied = await h.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(openaiBody()).expect(403);
    expect(denied.body.error).to.include({ code: 'subscription_invalid' });
  });

  it('reserves the worst case (max_tokens) up front: a request that could overspend the balance is refused before the upstream', async () => {
    const h = harness();
    // gpt-4o: 1000 output tokens alone cost 1000 × 10.00 / 1e6 = 0.01 USD, before any prompt.
    const user = await h.createUser({ balanceUsd: '0.01' });
    const upstreamBefore = h.gateway.mockUpstream?.stats.requests ?? 0;
    const refused = await h
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send(openaiBody({ model: 'gpt-4o', max_tokens: 1000 }))
      .expect(403);
    expect(refused.body.error).to.include({ code: 'insufficient_balance' });
    expect(h.gateway.mockUpstream?.stats.requests ?? 0).to.equal(upstreamBefore, 'no upstream call was made');
    await h
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send(openaiBody({ model: 'gpt-4o', max_tokens: 900 }))
      .expect(200);
    expect(await h.gateway.core.listReservations(user.userId)).to.deep.equal([], 'the settlement released the reservation');
  });

  it('refuses a max_tokens that is not a positive integer, or an n outside 1-128, before billing', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '1.00' });
    const res = await h
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send(openaiBody({ max_tokens: -5 }))
      .expect(400);
    expect(res.body.error.message).to.include('max_tokens');
    for (const n of [0, 129, 1.5, '3']) {
      const bad = await h.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(openaiBody({ n })).expect(400);
      expect(bad.body.error.message).to.include('"n"');
    }
    // Content whose cost cannot be bounded before the call is refused, not reserved too small.
    const file = await h
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send(openaiBody({ messages: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] }] }))
      .expect(400);
    expect(file.body.error.message).to.include('input_file');
    expect(await usageOf(h, user)).to.deep.equal([]);
  });
}

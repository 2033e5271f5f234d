// The gateway against an external upstream (UPSTREAM_URL): what it forwards, and how upstream failures are answered.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { startHarness, type GatewayHarness } from './gateway-harness.js';

interface Seen {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** A scripted upstream: records each request and answers with the next scripted reply. */
async function scriptedUpstream() {
  const seen: Seen[] = [];
  const replies: { status: number; body: unknown }[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req
      .setEncoding('utf8')
      .on('data', (chunk: string) => {
        text += chunk;
      })
      .on('end', () => {
        seen.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(text || '{}') });
        const reply = replies.shift() ?? { status: 500, body: { error: 'unscripted' } };
        res.writeHead(reply.status, { 'content-type': 'application/json' }).end(JSON.stringify(reply.body));
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    replies,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const completion = (id: string) => ({
  id,
  object: 'chat.completion',
  model: 'gpt-4o',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }],
  usage: { prompt_tokens: 1000, completion_tokens: 100, total_tokens: 1100 },
});

describe('example gateway e2e: an external upstream', function () {
  let upstream: Awaited<ReturnType<typeof scriptedUpstream>>;
  let harness: GatewayHarness;

  before(async () => {
    upstream = await scriptedUpstream();
    // A trailing /v1 is accepted and dropped: the routes append their own /v1/... path.
    harness = await startHarness({ UPSTREAM_URL: `${upstream.url}/v1`, UPSTREAM_API_KEY: 'upstream-secret-key' });
  });

  after(async () => {
    await harness?.close();
    await upstream?.close();
  });

  it('forwards with the gateway credential (never the caller key) and charges the reported usage', async () => {
    const user = await harness.createUser({ balanceUsd: '1.00' });
    expect(harness.gateway.mockUpstream).to.equal(null);
    upstream.replies.push({ status: 200, body: completion('chatcmpl-external-1') });
    const res = await harness
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
      .expect(200);
    expect(res.body.id).to.equal('chatcmpl-external-1');
    const request = upstream.seen.at(-1) as Seen;
    expect(request.path).to.equal('/v1/chat/completions');
    expect(request.headers.authorization).to.equal('Bearer upstream-secret-key');
    expect(JSON.stringify(request.headers)).not.to.include(user.key);
    // (1000 × 2.50 + 100 × 10.00) / 1e6 = 0.0035 USD.
    const [entry] = await harness.gateway.core.listUsage(user.userId, 1);
    expect(entry).to.include({ requestId: 'chatcmpl-external-1', costUsd: '0.00350000' });
  });

  it('asks a streamed OpenAI call for its usage chunk, and sends Anthropic calls with x-api-key', async () => {
    const user = await harness.createUser({ balanceUsd: '1.00' });
    upstream.replies.push({ status: 400, body: { error: { type: 'invalid_request_error', message: 'scripted' } } });
    await harness
      .http()
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${user.key}`)
      .send({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    expect(upstream.seen.at(-1)?.body.stream_options).to.deep.equal({ include_usage: true });

    upstream.replies.push({ status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: 'scripted' } } });
    await harness
      .http()
      .post('/v1/messages')
      .set('x-api-key', user.key)
      .send({ model: 'claude-sonnet-4-0', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] });
    const request = upstream.seen.at(-1) as Seen;
    expect(request.path).to.equal('/v1/messages');
    expect(request.headers).to.include({ 'x-api-key': 'upstream-secret-key', 'anthropic-version': '2023-06-01' });
  });

  it('passes a 400 of the upstream through and answers its 5xx with 502, charging neither', async () => {
    const user = await harness.createUser({ balanceUsd: '1.00' });
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
    upstream.replies.push({ status: 400, body: { error: { type: 'invalid_request_error', message: 'bad temperature' } } });
    const bad = await harness.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(body).expect(400);
    expect(bad.body.error.message).to.equal('bad temperature');
    upstream.replies.push({ status: 503, body: { error: 'internal detail from the upstream' } });
    const failed = await harness.http().post('/v1/chat/completions').set('Authorization', `Bearer ${user.key}`).send(body).expect(502);
    expect(failed.body.error).to.include({ type: 'api_error', code: 'upstream_error' });
    expect(JSON.stringify(failed.body)).not.to.include('internal detail');
    expect(await harness.gateway.core.listUsage(user.userId, 5)).to.deep.equal([]);
    expect(await harness.gateway.core.getBalance(user.userId)).to.equal('1.00000000');
  });

  it('answers 502 in the route format when the upstream is unreachable', async () => {
    const down = await startHarness({ UPSTREAM_URL: 'http://127.0.0.1:1' });
    try {
      const user = await down.createUser({ balanceUsd: '1.00' });
      const res = await down
        .http()
        .post('/v1/messages')
        .set('x-api-key', user.key)
        .send({ model: 'claude-sonnet-4-0', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })
        .expect(502);
      expect(res.body).to.deep.include({ type: 'error' });
      expect(res.body.error.type).to.equal('api_error');
      expect(await down.gateway.core.listUsage(user.userId, 5)).to.deep.equal([]);
    } finally {
      await down.close();
    }
  });
});

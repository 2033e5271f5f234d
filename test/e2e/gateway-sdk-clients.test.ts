// The official OpenAI and Anthropic SDKs against the example gateway: how many requests each denial
// costs them. Both SDKs retry a 429 twice by default and wait whatever Retry-After says, so a wait of
// hours must come with x-should-retry: false (else the client sleeps for hours, then asks again), a
// short wait is retried, and a refusal that waiting cannot fix is asked once.
import { expect } from 'chai';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { METERING_ENV, startHarness, type GatewayHarness, type TestUser } from './gateway-harness.js';

/** A fetch that counts the requests an SDK sends. */
function countingFetch(): { fetch: typeof fetch; count(): number } {
  let n = 0;
  const counted: typeof fetch = (input, init) => {
    n++;
    return fetch(input, init);
  };
  return { fetch: counted, count: () => n };
}

describe('example gateway e2e: the official SDKs follow its retry hints', function () {
  this.timeout(30_000);
  let h: GatewayHarness;
  let base: string;

  before(async () => {
    h = await startHarness({});
    base = await h.listen();
  });

  after(async () => {
    await h?.close();
  });

  const openai = (user: TestUser, counter: { fetch: typeof fetch }) => new OpenAI({ apiKey: user.key, baseURL: `${base}/v1`, fetch: counter.fetch });
  const anthropic = (user: TestUser, counter: { fetch: typeof fetch }) => new Anthropic({ apiKey: user.key, baseURL: base, fetch: counter.fetch });
  const chat = (client: OpenAI) => client.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
  const message = (client: Anthropic) =>
    client.messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });

  /** The status the SDK ended with and how many requests it sent. */
  async function outcome(call: () => Promise<unknown>, counter: { count(): number }): Promise<{ status: number | undefined; requests: number }> {
    try {
      await call();
      return { status: 200, requests: counter.count() };
    } catch (err) {
      return { status: (err as { status?: number }).status, requests: counter.count() };
    }
  }

  it('a spend window exhausted for hours (429, Retry-After ≈ 5 h, x-should-retry: false): one request each, no sleeping', async () => {
    const user = await h.createUser({ balanceUsd: '5' });
    await h.admin('put', `/admin/keys/${user.keyId}/limits`, { rateLimit5hUsd: '0.00000001' }).expect(200);
    for (const [name, run] of [
      ['openai', (c: ReturnType<typeof countingFetch>) => outcome(() => chat(openai(user, c)), c)],
      ['anthropic', (c: ReturnType<typeof countingFetch>) => outcome(() => message(anthropic(user, c)), c)],
    ] as const) {
      const startedAt = Date.now();
      expect(await run(countingFetch()), name).to.deep.equal({ status: 429, requests: 1 });
      expect(Date.now() - startedAt, `${name} did not wait`).to.be.below(5000);
    }
  });

  it('no balance left (403, x-should-retry: false): one request each', async () => {
    const user = await h.createUser({ balanceUsd: '0' });
    for (const [name, run] of [
      ['openai', (c: ReturnType<typeof countingFetch>) => outcome(() => chat(openai(user, c)), c)],
      ['anthropic', (c: ReturnType<typeof countingFetch>) => outcome(() => message(anthropic(user, c)), c)],
    ] as const) {
      expect(await run(countingFetch()), name).to.deep.equal({ status: 403, requests: 1 });
    }
  });

  it('a concurrency cap (429, Retry-After: 1): retried twice after a second each, and admitted once the slot is free', async () => {
    const user = await h.createUser({ balanceUsd: '5', maxConcurrency: 1 });
    // A long stream holds the only slot for a few seconds (1 ms per word of up to 4,000).
    const holding = fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, max_tokens: 4000, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const response = await holding;
    expect(response.status).to.equal(200);
    const refused = countingFetch();
    expect(await outcome(() => chat(openai(user, refused)), refused)).to.deep.equal({ status: 429, requests: 3 });
    await response.text();
    const admitted = countingFetch();
    expect(await outcome(() => chat(openai(user, admitted)), admitted)).to.deep.equal({ status: 200, requests: 1 });
  });
});

describe('example gateway e2e: the official SDKs read a stream ended by its budget as an ordinary end', function () {
  this.timeout(60_000);
  let h: GatewayHarness;
  let base: string;

  before(async () => {
    h = await startHarness({ ...METERING_ENV });
    base = await h.listen();
  });

  after(async () => {
    await h?.close();
  });

  it('openai: the stream iterates to its end, the last choice finishing with budget_exceeded, no error thrown', async () => {
    const user = await h.createUser({ balanceUsd: '0.01' });
    const client = new OpenAI({ apiKey: user.key, baseURL: `${base}/v1` });
    const stream = await client.chat.completions.create({ model: 'gpt-4o', stream: true, max_tokens: 20_000, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).to.equal('budget_exceeded');
    expect(text.length).to.be.greaterThan(100);
  });

  it('anthropic: finalMessage() resolves with the text delivered and stop_reason budget_exceeded', async () => {
    const user = await h.createUser({ balanceUsd: '0.01' });
    const client = new Anthropic({ apiKey: user.key, baseURL: base });
    const message = await client.messages
      .stream({ model: 'claude-sonnet-4-0', max_tokens: 20_000, messages: [{ role: 'user', content: 'hi' }] })
      .finalMessage();
    expect(message.stop_reason as string).to.equal('budget_exceeded');
    const block = message.content[0];
    expect(block?.type === 'text' && block.text.length > 100).to.equal(true);
    expect(message.usage.output_tokens).to.be.greaterThan(0);
  });
});

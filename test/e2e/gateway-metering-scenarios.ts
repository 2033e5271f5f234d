// E2E scenarios of live stream metering (docs/stream-metering.md), shared by every backend: a stream
// the caller cannot pay for ends with its API's final event and is settled for what was delivered;
// ten streams share one balance; a subscription's daily cap and a platform quota stop a stream the
// same way; a stream that fits runs to its end and is charged exactly what an unmetered one is.
// The harness's mock upstream answers as many words (one token each) as the request's max_tokens.
import { expect } from 'chai';
import { parseUsd } from '../../lib/index.js';
import { computeCostUnits } from '../../examples/proxy/prices.js';
import { estimateTokensFromChars } from '../../examples/proxy/token-estimate.js';
import type { GatewayHarness, TestUser } from './gateway-harness.js';
import { waitFor } from './gateway-harness.js';

/** The slice the metering harness runs with (METERING_SLICE_TOKENS). */
export const METERING_SLICE_TOKENS = 256;

const PROMPT = 'Tell me a long story.';

interface Streamed {
  status: number;
  text: string;
  /** The SSE data payloads, JSON-parsed ([DONE] left out). */
  events: Record<string, unknown>[];
}

function dataOf(text: string): Record<string, unknown>[] {
  return text
    .split(/\n\n/)
    .flatMap((event) => event.split('\n').filter((line) => line.startsWith('data: ') && line !== 'data: [DONE]'))
    .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>);
}

async function openaiStream(h: GatewayHarness, user: TestUser, model: string, maxTokens: number): Promise<Streamed> {
  const res = await h
    .http()
    .post('/v1/chat/completions')
    .set('Authorization', `Bearer ${user.key}`)
    .send({ model, stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: PROMPT }] });
  return { status: res.status, text: res.text, events: res.status === 200 ? dataOf(res.text) : [] };
}

async function anthropicStream(h: GatewayHarness, user: TestUser, model: string, maxTokens: number): Promise<Streamed> {
  const res = await h
    .http()
    .post('/v1/messages')
    .set('x-api-key', user.key)
    .send({ model, stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: PROMPT }] });
  return { status: res.status, text: res.text, events: res.status === 200 ? dataOf(res.text) : [] };
}

/** The text the client received in an OpenAI stream. */
const openaiText = (s: Streamed) =>
  s.events.flatMap((e) => ((e.choices ?? []) as { delta?: { content?: string } }[]).map((c) => c.delta?.content ?? '')).join('');
const anthropicText = (s: Streamed) => s.events.map((e) => (e.delta as { text?: string } | undefined)?.text ?? '').join('');

/** Units one slice of `model`'s output costs. */
const slice = (model: string) => computeCostUnits(model, { inputTokens: 0, outputTokens: METERING_SLICE_TOKENS }, '1');

async function settledUsage(h: GatewayHarness, user: TestUser, count = 1) {
  return waitFor(async () => {
    const rows = await h.gateway.core.listUsage(user.userId, 100);
    return rows.length >= count ? rows : undefined;
  }, `${count} usage rows`);
}

const spent = async (h: GatewayHarness, user: TestUser, startUsd: string) => parseUsd(startUsd) - parseUsd((await h.gateway.core.getBalance(user.userId))!);

export function meteringScenarios(harness: () => GatewayHarness): void {
  it('a $0.05 balance asking for a $0.20 stream: ended with finish_reason budget_exceeded, charged at most what it held, for the tokens delivered', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '0.05' });
    const abortedBefore = h.gateway.mockUpstream?.stats.aborted ?? 0;
    // 20,000 output tokens of gpt-4o at $10 per million: $0.20.
    const stream = await openaiStream(h, user, 'gpt-4o', 20_000);
    expect(stream.status).to.equal(200);
    expect(stream.text.trimEnd().endsWith('data: [DONE]')).to.equal(true);
    const last = stream.events.at(-1) as { choices: { finish_reason: string }[] };
    expect(last.choices.map((c) => c.finish_reason)).to.deep.equal(['budget_exceeded']);
    const [row] = await settledUsage(h, user);
    const delivered = openaiText(stream);
    expect(delivered.length).to.be.greaterThan(1000);
    // The usage row counts what the client received (at four characters a token: the stream reports no usage before its end).
    expect(row!.outputTokens).to.equal(estimateTokensFromChars(delivered.length));
    expect(row!.outputTokens).to.be.below(20_000);
    const charged = await spent(h, user, '0.05');
    expect(charged).to.equal(parseUsd(row!.costUsd));
    expect(charged <= parseUsd('0.05') + slice('gpt-4o'), `charged ${charged}`).to.equal(true);
    expect(parseUsd((await h.gateway.core.getBalance(user.userId))!) >= -slice('gpt-4o')).to.equal(true);
    expect(await h.gateway.core.listReservations(user.userId)).to.deep.equal([]);
    // The upstream call was cut off, not read to its end.
    if (h.gateway.mockUpstream) await waitFor(async () => (h.gateway.mockUpstream!.stats.aborted > abortedBefore ? true : undefined), 'the upstream abort');
    console.log(`      $0.05 against a $0.20 stream: charged $${row!.costUsd} for ${row!.outputTokens} of 20000 tokens delivered`);
  });

  it('the same on the Anthropic route: the open block closed, a message_delta with stop_reason budget_exceeded and the output delivered, then message_stop', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '0.05' });
    const stream = await anthropicStream(h, user, 'claude-sonnet-4-0', 20_000);
    expect(stream.status).to.equal(200);
    const types = stream.events.map((e) => e.type);
    expect(types.slice(-3)).to.deep.equal(['content_block_stop', 'message_delta', 'message_stop']);
    const delta = stream.events.at(-2) as { delta: { stop_reason: string }; usage: { output_tokens: number } };
    expect(delta.delta.stop_reason).to.equal('budget_exceeded');
    const [row] = await settledUsage(h, user);
    expect(delta.usage.output_tokens).to.equal(row!.outputTokens);
    expect(row!.outputTokens).to.equal(estimateTokensFromChars(anthropicText(stream).length));
    const charged = await spent(h, user, '0.05');
    expect(charged <= parseUsd('0.05') + slice('claude-sonnet-4-0')).to.equal(true);
  });

  it('ten concurrent streams share one balance: all charged together at most the balance plus ten slices, every hold released', async function () {
    this.timeout(60_000);
    const h = harness();
    const user = await h.createUser({ balanceUsd: '0.05' });
    const streams = await Promise.all(Array.from({ length: 10 }, () => openaiStream(h, user, 'gpt-4o', 20_000)));
    const admitted = streams.filter((s) => s.status === 200);
    expect(admitted.length).to.be.greaterThan(0);
    for (const s of admitted) expect((s.events.at(-1) as { choices: { finish_reason: string }[] }).choices[0]?.finish_reason).to.equal('budget_exceeded');
    await settledUsage(h, user, admitted.length);
    const charged = await spent(h, user, '0.05');
    expect(charged <= parseUsd('0.05') + 10n * slice('gpt-4o'), `charged ${charged}`).to.equal(true);
    // Each stream that stopped had less than a slice of headroom left, so most of the balance was used.
    expect(charged > parseUsd('0.05') - 10n * slice('gpt-4o'), 'the budget was used').to.equal(true);
    console.log(
      `      10 streams on $0.05: ${admitted.length} admitted, charged $${(Number(charged) / 1e8).toFixed(8)} in all (bound $${(Number(parseUsd('0.05') + 10n * slice('gpt-4o')) / 1e8).toFixed(8)})`,
    );
    expect(await h.gateway.core.listReservations(user.userId)).to.deep.equal([]);
  });

  it("a subscription's daily cap and a platform quota stop a stream the same way", async () => {
    const h = harness();
    // Bob's plan: 2 USD a day; $1.96 of it spent already.
    const subscriber = await h.createUser({ groupId: 'pro', balanceUsd: '0' });
    await h.admin('put', `/admin/users/${subscriber.userId}/subscription`, { groupId: 'pro', days: 30 }).expect(200);
    const warm = await openaiStream(h, subscriber, 'gpt-4o-mini', 5);
    expect(warm.status).to.equal(200);
    const plan = {
      user: { id: subscriber.userId },
      group: { id: 'pro', billingType: 'subscription' as const, dailyLimitUsd: '2' },
      subscription: { id: 'plan' },
    };
    await h.gateway.core.settle({ requestId: `spend-${subscriber.userId}`, subject: plan, costUsd: '1.96' });
    const capped = await openaiStream(h, subscriber, 'gpt-4o', 20_000);
    expect(capped.status).to.equal(200);
    expect((capped.events.at(-1) as { choices: { finish_reason: string }[] }).choices[0]?.finish_reason).to.equal('budget_exceeded');
    const rows = await settledUsage(h, subscriber, 3);
    const streamed = rows.find((r) => r.costUsd !== '1.96000000' && r.outputTokens! > 5);
    expect(parseUsd(streamed!.costUsd) <= parseUsd('0.04') + slice('gpt-4o')).to.equal(true);

    const quoted = await h.createUser({ balanceUsd: '10' });
    await h
      .admin('put', `/admin/users/${quoted.userId}/platform-quotas/openai`, { dailyLimitUsd: '0.03', weeklyLimitUsd: null, monthlyLimitUsd: null })
      .expect(200);
    const limited = await openaiStream(h, quoted, 'gpt-4o', 20_000);
    expect((limited.events.at(-1) as { choices: { finish_reason: string }[] }).choices[0]?.finish_reason).to.equal('budget_exceeded');
    await settledUsage(h, quoted);
    const charged = await spent(h, quoted, '10');
    expect(charged <= parseUsd('0.03') + slice('gpt-4o'), `charged ${charged}`).to.equal(true);
  });

  it('a stream that fits runs to its end with no refused extension, charged exactly the reported usage, as unmetered', async () => {
    const h = harness();
    const user = await h.createUser({ balanceUsd: '5' });
    // 3,000 tokens: more than ten slices, so the hold grows several times on the way.
    const stream = await openaiStream(h, user, 'gpt-4o', 3000);
    const last = stream.events.at(-1) as { usage?: { prompt_tokens: number; completion_tokens: number } };
    expect(stream.text.trimEnd().endsWith('data: [DONE]')).to.equal(true);
    expect(stream.events.some((e) => JSON.stringify(e).includes('budget_exceeded'))).to.equal(false);
    const usage = stream.events.map((e) => e.usage as { prompt_tokens: number; completion_tokens: number } | undefined).find((u) => u);
    expect(usage?.completion_tokens ?? last.usage?.completion_tokens).to.equal(3000);
    const [row] = await settledUsage(h, user);
    const unmetered = computeCostUnits('gpt-4o', { inputTokens: usage!.prompt_tokens, outputTokens: usage!.completion_tokens }, '1');
    expect(parseUsd(row!.costUsd)).to.equal(unmetered);
    expect(await spent(h, user, '5')).to.equal(unmetered);
    const metrics = (await h.http().get('/metrics').expect(200)).text;
    expect(metrics).to.match(/^billing_hold_extensions_total\{result="extended"\} [1-9]/m);
  });
}

// The example gateway's pure money parts: the price table, exact cost with the rate multiplier, and what gets charged.
import { expect } from 'chai';
import { formatUsd } from '../../lib/index.js';
import { requestIdFor, tokensToCharge } from '../../examples/proxy/charge.js';
import { BILLABLE_BLOCK_TYPES, contentBlocks, outputTokenBound, promptTokenBound } from '../../examples/proxy/cost-estimate.js';
import { PRICE_TABLE, checkMultiplier, computeCostUnits, findModelPrice, indexPrices } from '../../examples/proxy/prices.js';
import { estimatePromptTokens } from '../../examples/proxy/token-estimate.js';
import { emptyUsage } from '../../examples/proxy/usage-parser.js';

const cost = (model: string, inputTokens: number, outputTokens: number, multiplier = '1') =>
  formatUsd(computeCostUnits(model, { inputTokens, outputTokens }, multiplier));

describe('example proxy: prices and cost', () => {
  it('finds every table model and parses its prices', () => {
    expect(() => indexPrices(PRICE_TABLE)).not.to.throw();
    for (const price of PRICE_TABLE) expect(findModelPrice(price.model)).to.equal(price);
    expect(findModelPrice('gpt-unknown')).to.equal(undefined);
    expect(findModelPrice(42)).to.equal(undefined);
  });

  it('computes (in × pIn + out × pOut) / 1e6 exactly', () => {
    // gpt-4o-mini: 0.15 in, 0.60 out per 1M tokens.
    expect(cost('gpt-4o-mini', 8, 10)).to.equal('0.00000720');
    expect(cost('gpt-4o-mini', 1_000_000, 0)).to.equal('0.15000000');
    expect(cost('gpt-4o-mini', 0, 1_000_000)).to.equal('0.60000000');
    // 0.1 + 0.2 style sums stay exact: 3 × 0.10/1M + 3 × 0.40/1M = 1.5e-6.
    expect(cost('gpt-4.1-nano', 3, 3)).to.equal('0.00000150');
    expect(cost('gpt-4o', 0, 0)).to.equal('0.00000000');
  });

  it('applies the rate multiplier before the single rounding', () => {
    // claude-3-5-haiku: (10 × 0.80 + 12 × 4.00) / 1e6 × 0.8 = 44.8e-6.
    expect(cost('claude-3-5-haiku-latest', 10, 12, '0.8')).to.equal('0.00004480');
    expect(cost('gpt-4o', 1000, 1000, '1.5')).to.equal('0.01875000');
    expect(cost('gpt-4o', 1000, 1000, '0')).to.equal('0.00000000');
  });

  it('rounds half away from zero at 1e-8 USD, once', () => {
    // 1 input token of gpt-4o-mini = 0.15e-6 USD = 15 units exactly; × 0.1 = 1.5 units → 2.
    expect(cost('gpt-4o-mini', 1, 0, '0.1')).to.equal('0.00000002');
    // 15 units × 0.03 = 0.45 units → 0.
    expect(cost('gpt-4o-mini', 1, 0, '0.03')).to.equal('0.00000000');
  });

  it('refuses bad multipliers, token counts and models with errors naming them', () => {
    expect(() => checkMultiplier('1e3')).to.throw(/rateMultiplier/);
    expect(() => checkMultiplier('-1')).to.throw(/rateMultiplier/);
    expect(() => checkMultiplier(1)).to.throw(/rateMultiplier/);
    expect(checkMultiplier('0.85')).to.equal('0.85');
    expect(() => cost('gpt-4o', -1, 0)).to.throw(/inputTokens/);
    expect(() => cost('gpt-4o', 0, 1.5)).to.throw(/outputTokens/);
    expect(() => cost('nope', 1, 1)).to.throw(/price table/);
  });
});

describe('example proxy: what a request is charged', () => {
  it('charges the reported usage of a complete response', () => {
    const snapshot = { ...emptyUsage(), inputTokens: 12, outputTokens: 30, outputChars: 400 };
    expect(tokensToCharge(snapshot, 99, true)).to.deep.equal({ inputTokens: 12, outputTokens: 30, estimated: false });
  });

  it('estimates what a complete response did not report', () => {
    const snapshot = { ...emptyUsage(), outputChars: 41 };
    expect(tokensToCharge(snapshot, 7, true)).to.deep.equal({ inputTokens: 7, outputTokens: 11, estimated: true });
  });

  it('charges a cut-short stream at least the prompt and the text already streamed', () => {
    // Anthropic reports output 1 at message_start; 40 characters already went to the client.
    const anthropic = { ...emptyUsage(), inputTokens: 20, outputTokens: 1, outputChars: 40 };
    expect(tokensToCharge(anthropic, 5, false)).to.deep.equal({ inputTokens: 20, outputTokens: 10, estimated: true });
    // OpenAI reports nothing until the end: the prompt estimate and the streamed text.
    expect(tokensToCharge({ ...emptyUsage(), outputChars: 9 }, 5, false)).to.deep.equal({ inputTokens: 5, outputTokens: 3, estimated: true });
    // Nothing streamed yet: the prompt only.
    expect(tokensToCharge(emptyUsage(), 5, false)).to.deep.equal({ inputTokens: 5, outputTokens: 0, estimated: true });
  });

  it('uses the upstream response id as the request id only when it is a valid one', () => {
    expect(requestIdFor({ ...emptyUsage(), responseId: 'chatcmpl-abc' })).to.equal('chatcmpl-abc');
    expect(requestIdFor({ ...emptyUsage(), responseId: 'has space' })).to.match(/^gw-[0-9a-f-]{36}$/);
    expect(requestIdFor(emptyUsage())).to.match(/^gw-/);
    expect(requestIdFor(emptyUsage())).not.to.equal(requestIdFor(emptyUsage()));
  });

  it('estimates prompt tokens deterministically from system and message text', () => {
    expect(estimatePromptTokens({ messages: [{ role: 'user', content: 'x'.repeat(30) }] })).to.equal(8);
    expect(
      estimatePromptTokens({
        system: [{ type: 'text', text: 'abcd' }],
        messages: [{ role: 'user', content: [{ type: 'text', text: 'abcdefgh' }, { type: 'image' }] }],
      }),
    ).to.equal(3);
    expect(estimatePromptTokens({ messages: [] })).to.equal(1);
    expect(estimatePromptTokens(null)).to.equal(1);
  });
});

describe('example proxy: what a request reserves', () => {
  const gpt4o = findModelPrice('gpt-4o')!;
  const haiku = findModelPrice('claude-3-5-haiku-latest')!;

  it('bounds output by the largest limit field the upstream could honour, times n, at most the model maximum', () => {
    expect(outputTokenBound({ max_tokens: 24, max_completion_tokens: 1 }, gpt4o)).to.equal(24);
    expect(outputTokenBound({ max_tokens: 1, max_completion_tokens: 24 }, gpt4o)).to.equal(24);
    expect(outputTokenBound({ max_tokens: 24, n: 3 }, gpt4o)).to.equal(72);
    expect(outputTokenBound({ max_tokens: 10_000_000 }, gpt4o)).to.equal(gpt4o.maxOutputTokens);
    expect(outputTokenBound({}, gpt4o)).to.equal(gpt4o.maxOutputTokens, 'no bound: the model maximum');
    expect(outputTokenBound({}, gpt4o)).to.equal(16_384);
    // Anthropic has no n: one choice.
    expect(outputTokenBound({ max_tokens: 24, n: 3 }, haiku)).to.equal(24);
  });

  it("bounds the prompt by the body bytes plus the model's bound per image block, tool results included", () => {
    expect(promptTokenBound({ messages: [{ role: 'user', content: 'hi' }] }, 57, gpt4o)).to.equal(57);
    expect(promptTokenBound({}, 0, gpt4o)).to.equal(1);
    const body = {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: 'https://x/y.png' } },
            { type: 'text', text: 'a' },
          ],
        },
        { role: 'user', content: [{ type: 'tool_result', content: [{ type: 'image', source: { type: 'url', url: 'https://x/z.png' } }] }] },
      ],
    };
    expect(promptTokenBound(body, 300, gpt4o)).to.equal(300 + 2 * gpt4o.imageTokenBound);
    // gpt-4o-mini bills images at many more tokens: its bound is its own.
    const mini = findModelPrice('gpt-4o-mini')!;
    expect(promptTokenBound(body, 300, mini)).to.equal(300 + 2 * mini.imageTokenBound);
    expect(mini.imageTokenBound).to.be.above(gpt4o.imageTokenBound);
    // Deeply nested tool results do not overflow the stack.
    let content: unknown[] = [{ type: 'image' }];
    for (let i = 0; i < 20_000; i++) content = [{ type: 'tool_result', content }];
    expect(promptTokenBound({ messages: [{ role: 'user', content }] }, 10, haiku)).to.equal(10 + haiku.imageTokenBound);
  });

  it('names content it cannot bound (documents, files, audio, unknown kinds), and only those', () => {
    const blocks = contentBlocks({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'a' },
            { type: 'document', source: {} },
          ],
        },
        { role: 'user', content: 'plain text' },
        { role: 'user', content: [{ type: 'tool_result', content: [{ type: 'input_audio' }] }] },
      ],
    });
    expect(
      blocks
        .filter((b) => !BILLABLE_BLOCK_TYPES.has(b.type))
        .map((b) => b.type)
        .sort(),
    ).to.deep.equal(['document', 'input_audio']);
  });

  it('the prompt bound is at least the UTF-8 bytes of every text in the body, so no tokenizer exceeds it', () => {
    const text = '日本語のテキスト 😀 and ascii';
    const json = JSON.stringify({ messages: [{ role: 'user', content: text }] });
    expect(promptTokenBound(JSON.parse(json), Buffer.byteLength(json), gpt4o)).to.be.at.least(Buffer.byteLength(text));
  });
});

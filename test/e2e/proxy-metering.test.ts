// Unit tests of the example gateway's stream metering parts (docs/stream-metering.md): the SSE event
// splitter, the final events of a stream ended by its budget, and the meter's growth and refusals.
import { expect } from 'chai';
import type { HoldExtensionResult } from '../../lib/index.js';
import { SseEventSplitter } from '../../examples/proxy/sse-events.js';
import { budgetEndEvents, StreamMeter } from '../../examples/proxy/stream-meter.js';
import { emptyUsage, MAX_EVENT_CHARS, type UsageSnapshot } from '../../examples/proxy/usage-parser.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('gateway metering: the SSE event splitter', () => {
  it('hands out whole events only, across chunk boundaries, CRLF and multi-byte characters split in two', () => {
    const splitter = new SseEventSplitter();
    const text = 'data: {"a":"Grüße"}\r\n\r\ndata: {"b":"🌍"}\n\ndata: [DONE]\n\n';
    const all = bytes(text);
    let out = '';
    // One byte at a time: every separator and every multi-byte character is split somewhere.
    for (let i = 0; i < all.length; i++) {
      const ready = splitter.push(all.subarray(i, i + 1));
      if (ready !== '') expect(ready, 'ends at a separator').to.match(/(\r\n\r\n|\n\n|\r\r)$/);
      out += ready;
    }
    expect(out + splitter.end()).to.equal(text);
  });

  it('notes the open Anthropic block, message_start and finished choices among the events handed out', () => {
    const splitter = new SseEventSplitter();
    splitter.delivered('event: message_start\ndata: {"type":"message_start","message":{"stop_reason":null}}\n\n');
    splitter.delivered('event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n');
    expect([splitter.messageStarted, splitter.openBlock, splitter.finishedChoices]).to.deep.equal([true, 0, 0]);
    splitter.delivered('event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n');
    splitter.delivered('event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\n');
    expect([splitter.openBlock, splitter.finishedChoices]).to.deep.equal([null, 1]);
    const openai = new SseEventSplitter();
    openai.delivered('data: {"choices":[{"index":0,"finish_reason":null},{"index":1,"finish_reason":"stop"}]}\n\n');
    expect(openai.finishedChoices).to.equal(1);
  });

  it('refuses an event longer than the usage parser reads, instead of relaying output nobody counts', () => {
    const splitter = new SseEventSplitter();
    expect(() => splitter.push(bytes(`data: "${'x'.repeat(MAX_EVENT_CHARS)}"`))).to.throw(/longer than/);
  });
});

describe('gateway metering: the final events of a stream ended by its budget', () => {
  const end = { responseId: 'msg_1', model: 'm', choices: 1, openBlock: null, messageStarted: true, inputTokens: 3, outputTokens: 7 };
  const events = (text: string) =>
    text
      .split('\n\n')
      .filter(Boolean)
      .map((e) => JSON.parse(e.split('data: ')[1]!) as { type: string });

  it('Anthropic: closes the open block only when there is one, and starts the message when the client got none', () => {
    expect(events(budgetEndEvents('anthropic', end)).map((e) => e.type)).to.deep.equal(['message_delta', 'message_stop']);
    expect(events(budgetEndEvents('anthropic', { ...end, openBlock: 2 })).map((e) => e.type)).to.deep.equal([
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    const fresh = events(budgetEndEvents('anthropic', { ...end, messageStarted: false }));
    expect(fresh.map((e) => e.type)).to.deep.equal(['message_start', 'message_delta', 'message_stop']);
    expect(fresh[1]).to.deep.include({ delta: { stop_reason: 'budget_exceeded', stop_sequence: null }, usage: { output_tokens: 7 } });
  });

  it('OpenAI: one finishing chunk for every choice, then [DONE]', () => {
    const text = budgetEndEvents('openai', { ...end, responseId: null, choices: 2 });
    expect(text.endsWith('data: [DONE]\n\n')).to.equal(true);
    const chunk = JSON.parse(text.split('\n\n')[0]!.slice(6)) as { choices: { index: number; finish_reason: string }[] };
    expect(chunk.choices).to.deep.equal([
      { index: 0, delta: {}, finish_reason: 'budget_exceeded' },
      { index: 1, delta: {}, finish_reason: 'budget_exceeded' },
    ]);
  });
});

describe('gateway metering: the meter', () => {
  /** A meter whose cost is the snapshot's output characters, over a scripted list of extension answers. */
  function meter(answers: HoldExtensionResult[]) {
    const asked: bigint[] = [];
    const m = new StreamMeter({
      heldUnits: 100n,
      sliceUnits: 40n,
      costOf: (snapshot) => BigInt(snapshot.outputChars),
      extend: async (units) => {
        asked.push(units);
        return answers.shift() ?? { extended: false, reason: 'refused', code: 'INSUFFICIENT_BALANCE', dimension: 'bal' };
      },
    });
    return { m, asked };
  }
  const at = (chars: number): UsageSnapshot => ({ ...emptyUsage(), outputChars: chars });

  it('grows the hold a slice at a time once less than half a slice is left, and allows only what is held', async () => {
    const { m, asked } = meter([
      { extended: true, heldUsd: '0.00000140' },
      { extended: true, heldUsd: '0.00000180' },
    ]);
    expect(await m.allows(at(70))).to.equal(true);
    expect(asked).to.deep.equal([], '30 left of 100: more than half a slice');
    expect(await m.allows(at(85))).to.equal(true);
    expect([asked.length, m.heldUnits]).to.deep.equal([1, 140n]);
    // A big chunk: grows as many slices as it needs.
    expect(await m.allows(at(170))).to.equal(true);
    expect(m.heldUnits).to.equal(180n);
  });

  it('a refusal is final; what is held still counts', async () => {
    const { m, asked } = meter([{ extended: false, reason: 'refused', code: 'INSUFFICIENT_BALANCE', dimension: 'bal' }]);
    expect(await m.allows(at(90))).to.equal(true);
    expect(await m.allows(at(100))).to.equal(true);
    expect(await m.allows(at(101))).to.equal(false);
    expect(asked).to.have.length(1);
    expect(m.refusal).to.deep.include({ reason: 'refused' });
  });

  it('a cache failure is not final: tried again on a later chunk, a second later', async function () {
    this.timeout(5000);
    const { m, asked } = meter([
      { extended: false, reason: 'unavailable', detail: 'cache_error' },
      { extended: true, heldUsd: '0.00000140' },
    ]);
    expect(await m.allows(at(90))).to.equal(true);
    expect(await m.allows(at(95))).to.equal(true);
    expect(asked, 'not retried at once').to.have.length(1);
    await new Promise((resolve) => setTimeout(resolve, 1050));
    expect(await m.allows(at(110))).to.equal(true);
    expect([asked.length, m.heldUnits, m.refusal]).to.deep.equal([2, 140n, { extended: false, reason: 'unavailable', detail: 'cache_error' }]);
  });
});

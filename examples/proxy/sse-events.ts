// Splits a relayed SSE byte stream into whole events, so that a stream ended early (by its budget)
// never leaves the client half an event, and notes what the events handed to the client said: the
// Anthropic content block left open, and how many choices the upstream already finished.

import { EVENT_END_SOURCE, MAX_EVENT_CHARS } from './usage-parser.js';

const EVENT_END = new RegExp(EVENT_END_SOURCE, 'g');

export class SseEventSplitter {
  readonly #decoder = new TextDecoder();
  #pending = '';
  /** The index of an Anthropic content block started and not yet stopped, among the events handed out. */
  openBlock: number | null = null;
  /** Whether an Anthropic message_start was handed out. */
  messageStarted = false;
  /** Choices whose end (an OpenAI finish_reason, an Anthropic stop_reason) was handed out. */
  finishedChoices = 0;

  /** The whole events this chunk completes, as text with their blank lines ('' when none). */
  push(chunk: Uint8Array): string {
    // Only the new text (and the three characters before it, where a separator may begin) can hold a new end.
    const from = Math.max(0, this.#pending.length - 3);
    this.#pending += this.#decoder.decode(chunk, { stream: true });
    let end = 0;
    EVENT_END.lastIndex = from;
    for (let match = EVENT_END.exec(this.#pending); match; match = EVENT_END.exec(this.#pending)) end = match.index + match[0].length;
    const ready = this.#pending.slice(0, end);
    this.#pending = this.#pending.slice(end);
    // The longest event the usage parser reads: a longer one could not be counted, so the stream fails.
    if (this.#pending.length > MAX_EVENT_CHARS) throw new Error(`the upstream sent an event longer than ${MAX_EVENT_CHARS} characters`);
    return ready;
  }

  /** What is left once the upstream ended (a last event without a blank line after it). */
  end(): string {
    const rest = this.#pending + this.#decoder.decode();
    this.#pending = '';
    return rest;
  }

  /** Notes what events handed to the client opened, closed and finished. */
  delivered(events: string): void {
    for (const line of events.split(/\r\n|\n|\r/)) {
      if (!line.startsWith('data:')) continue;
      this.finishedChoices += line.match(/"(?:finish_reason|stop_reason)"\s*:\s*"[^"]+"/g)?.length ?? 0;
      const type = /"type"\s*:\s*"(content_block_start|content_block_stop|message_start)"/.exec(line)?.[1];
      if (type === 'message_start') this.messageStarted = true;
      else if (type === 'content_block_stop') this.openBlock = null;
      else if (type === 'content_block_start') {
        const index = /"index"\s*:\s*(\d+)/.exec(line)?.[1];
        if (index !== undefined) this.openBlock = Number(index);
      }
    }
  }
}

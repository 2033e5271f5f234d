// Splits a relayed SSE byte stream into whole events, so that a stream ended early (by its budget)
// never leaves the client half an event, and tracks the Anthropic content block left open.

const EVENT_END = /\r\n\r\n|\n\n|\r\r/g;

export class SseEventSplitter {
  readonly #decoder = new TextDecoder();
  #pending = '';
  /** The index of an Anthropic content block started and not yet stopped, among the events handed out. */
  openBlock: number | null = null;

  /** The whole events this chunk completes, as text with their blank lines ('' when none). */
  push(chunk: Uint8Array): string {
    this.#pending += this.#decoder.decode(chunk, { stream: true });
    let end = 0;
    EVENT_END.lastIndex = 0;
    for (let match = EVENT_END.exec(this.#pending); match; match = EVENT_END.exec(this.#pending)) end = match.index + match[0].length;
    const ready = this.#pending.slice(0, end);
    this.#pending = this.#pending.slice(end);
    return ready;
  }

  /** What is left once the upstream ended (a last event without a blank line after it). */
  end(): string {
    const rest = this.#pending + this.#decoder.decode();
    this.#pending = '';
    return rest;
  }

  /** Notes the content blocks that events handed to the client opened and closed. */
  delivered(events: string): void {
    for (const line of events.split(/\r\n|\n|\r/)) {
      if (!line.startsWith('data:')) continue;
      const type = /"type"\s*:\s*"(content_block_start|content_block_stop)"/.exec(line)?.[1];
      if (type === undefined) continue;
      const index = /"index"\s*:\s*(\d+)/.exec(line)?.[1];
      if (type === 'content_block_stop') this.openBlock = null;
      else if (index !== undefined) this.openBlock = Number(index);
    }
  }
}

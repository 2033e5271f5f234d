// Reads the upstream's token usage and response id, from a JSON body or from SSE events as they stream past.
import type { ApiFormat } from './gateway-errors.js';

export interface UsageSnapshot {
  /** The upstream's response id (chatcmpl-…, msg_…), when it sent one. */
  responseId: string | null;
  /** Tokens as the upstream reported them; null = not reported (yet). */
  inputTokens: number | null;
  outputTokens: number | null;
  /** Characters of generated text seen so far: the fallback when no output count was reported. */
  outputChars: number;
}

type Json = Record<string, unknown>;

function object(value: unknown): Json | null {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : null;
}

function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function sum(...values: unknown[]): number | null {
  let total: number | null = null;
  for (const value of values) {
    const n = count(value);
    if (n !== null) total = (total ?? 0) + n;
  }
  return total;
}

/** Anthropic input: uncached + cache-write + cache-read tokens, all charged at the input price here. */
function anthropicInput(usage: Json): number | null {
  return sum(usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens);
}

function textOf(value: unknown): number {
  return typeof value === 'string' ? value.length : 0;
}

export function emptyUsage(): UsageSnapshot {
  return { responseId: null, inputTokens: null, outputTokens: null, outputChars: 0 };
}

/** Usage of a complete (non-streamed) response body. */
export function usageFromJson(format: ApiFormat, body: unknown): UsageSnapshot {
  const snapshot = emptyUsage();
  const root = object(body);
  if (!root) return snapshot;
  if (typeof root.id === 'string') snapshot.responseId = root.id;
  const usage = object(root.usage);
  if (format === 'openai') {
    if (usage) {
      snapshot.inputTokens = count(usage.prompt_tokens);
      snapshot.outputTokens = count(usage.completion_tokens);
    }
    for (const choice of Array.isArray(root.choices) ? root.choices : []) {
      snapshot.outputChars += textOf(object(object(choice)?.message)?.content);
    }
  } else {
    if (usage) {
      snapshot.inputTokens = anthropicInput(usage);
      snapshot.outputTokens = count(usage.output_tokens);
    }
    for (const block of Array.isArray(root.content) ? root.content : []) snapshot.outputChars += textOf(object(block)?.text);
  }
  return snapshot;
}

/** Applies one SSE event's JSON payload to the snapshot. */
function applyEvent(format: ApiFormat, snapshot: UsageSnapshot, event: Json): void {
  if (format === 'openai') {
    if (snapshot.responseId === null && typeof event.id === 'string') snapshot.responseId = event.id;
    const usage = object(event.usage);
    if (usage) {
      snapshot.inputTokens = count(usage.prompt_tokens) ?? snapshot.inputTokens;
      snapshot.outputTokens = count(usage.completion_tokens) ?? snapshot.outputTokens;
    }
    for (const choice of Array.isArray(event.choices) ? event.choices : []) {
      snapshot.outputChars += textOf(object(object(choice)?.delta)?.content);
    }
    return;
  }
  switch (event.type) {
    case 'message_start': {
      const message = object(event.message);
      if (typeof message?.id === 'string') snapshot.responseId = message.id;
      const usage = object(message?.usage);
      if (usage) {
        snapshot.inputTokens = anthropicInput(usage) ?? snapshot.inputTokens;
        snapshot.outputTokens = count(usage.output_tokens) ?? snapshot.outputTokens;
      }
      break;
    }
    case 'message_delta': {
      // Cumulative counts: the last one wins.
      const usage = object(event.usage);
      if (usage) {
        snapshot.inputTokens = anthropicInput(usage) ?? snapshot.inputTokens;
        snapshot.outputTokens = count(usage.output_tokens) ?? snapshot.outputTokens;
      }
      break;
    }
    case 'content_block_delta':
      snapshot.outputChars += textOf(object(event.delta)?.text);
      break;
  }
}

/** Longest event kept while waiting for its end; usage events are tiny, so a giant one is skipped. */
export const MAX_EVENT_CHARS = 1024 * 1024;
/** The blank line that ends an SSE event, in each of the three line-end styles. */
export const EVENT_END_SOURCE = '\\r\\n\\r\\n|\\n\\n|\\r\\r';
const EVENT_END = new RegExp(EVENT_END_SOURCE);

/** Incremental SSE reader: push the bytes as they pass, read `snapshot` at any time. */
export class SseUsageParser {
  readonly snapshot: UsageSnapshot = emptyUsage();
  readonly #decoder = new TextDecoder();
  #buffer = '';
  #skipping = false;

  constructor(private readonly format: ApiFormat) {}

  push(chunk: Uint8Array): void {
    this.#feed(this.#decoder.decode(chunk, { stream: true }));
  }

  /** Text already decoded (the metered relay's whole events), instead of bytes. */
  pushText(text: string): void {
    this.#feed(text);
  }

  /** The stream ended: flush the decoder and read a last event that had no blank line after it. */
  end(): void {
    this.#feed(this.#decoder.decode());
    if (this.#buffer && !this.#skipping) this.#event(this.#buffer);
    this.#buffer = '';
  }

  #feed(text: string): void {
    this.#buffer += text;
    for (;;) {
      const match = EVENT_END.exec(this.#buffer);
      if (!match) break;
      const raw = this.#buffer.slice(0, match.index);
      this.#buffer = this.#buffer.slice(match.index + match[0].length);
      if (this.#skipping) this.#skipping = false;
      else this.#event(raw);
    }
    if (this.#buffer.length > MAX_EVENT_CHARS) {
      this.#buffer = '';
      this.#skipping = true;
    }
  }

  #event(raw: string): void {
    const data: string[] = [];
    for (const line of raw.split(/\r\n|\n|\r/)) {
      if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
    }
    const payload = data.join('\n');
    if (!payload || payload === '[DONE]') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload);
    } catch {
      return;
    }
    const event = object(parsed);
    if (event) applyEvent(this.format, this.snapshot, event);
  }
}

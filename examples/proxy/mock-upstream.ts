// A bundled mock of the OpenAI and Anthropic chat APIs (JSON and SSE, with token usage), so the gateway runs offline.
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readJsonBody } from './json-body.js';
import { estimatePromptTokens } from './token-estimate.js';

export interface MockUpstreamOptions {
  /** Delay before answering (or before the first SSE event), ms. Default 0. */
  latencyMs?: number;
  /** Delay between SSE chunks, ms. Default 0. */
  chunkDelayMs?: number;
  /** Longest reply in words; each word is one completion token. Default 24. */
  maxReplyWords?: number;
  host?: string;
  /** 0 (default) = a free port. */
  port?: number;
}

export interface MockUpstreamStats {
  /** Chat requests received (JSON and streamed). */
  requests: number;
  /** Streams whose client (the gateway) went away before the end. */
  aborted: number;
}

export interface MockUpstream {
  url: string;
  stats: MockUpstreamStats;
  close(): Promise<void>;
}

const VOCABULARY = (
  'This is the mock upstream of the billing gateway example. Every word of this reply is one completion token, ' +
  'the prompt is counted at four characters a token, and the gateway charges both at the price table rates.'
).split(' ');

/** The reply's words: as many as the request's max_tokens allows, at most maxWords. Deterministic. */
export function mockReplyWords(body: Record<string, unknown>, maxWords: number): string[] {
  const requested = body.max_tokens ?? body.max_completion_tokens;
  const wanted = typeof requested === 'number' && Number.isSafeInteger(requested) && requested > 0 ? requested : maxWords;
  const count = Math.min(wanted, maxWords);
  return Array.from({ length: count }, (_, i) => VOCABULARY[i % VOCABULARY.length] as string);
}

/** Sleeps, but wakes early when the client goes away. */
function pause(ms: number, res: ServerResponse): Promise<void> {
  if (ms <= 0 || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.once('close', done);
  });
}

/** Resolves when the response takes writes again, or is gone. */
function writable(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

type Format = 'openai' | 'anthropic';

interface Reply {
  format: Format;
  model: string;
  id: string;
  promptTokens: number;
  words: string[];
  /** OpenAI's `n`: this many choices, each the same words (and as many completion tokens each). */
  choices: number;
  includeUsage: boolean;
}

function jsonReply({ format, model, id, promptTokens, words, choices }: Reply): unknown {
  const text = words.join(' ');
  if (format === 'anthropic') {
    return {
      id,
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: promptTokens, output_tokens: words.length },
    };
  }
  return {
    id,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: Array.from({ length: choices }, (_, index) => ({ index, message: { role: 'assistant', content: text }, finish_reason: 'stop' })),
    usage: { prompt_tokens: promptTokens, completion_tokens: words.length * choices, total_tokens: promptTokens + words.length * choices },
  };
}

/** The SSE events of a reply, one chunk per yielded string (the chunk delay applies between them). */
function* sseEvents({ format, model, id, promptTokens, words, choices, includeUsage }: Reply): Generator<string> {
  if (format === 'anthropic') {
    const event = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    yield event('message_start', {
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: promptTokens, output_tokens: 1 },
      },
    }) + event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    for (const [i, word] of words.entries()) {
      yield event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: i === 0 ? word : ` ${word}` } });
    }
    yield event('content_block_stop', { index: 0 }) +
      event('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: words.length } }) +
      event('message_stop', {});
    return;
  }
  const created = Math.floor(Date.now() / 1000);
  const chunk = (fields: object) => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, ...fields })}\n\n`;
  const indexes = Array.from({ length: choices }, (_, index) => index);
  yield indexes.map((index) => chunk({ choices: [{ index, delta: { role: 'assistant', content: '' }, finish_reason: null }] })).join('');
  for (const [i, word] of words.entries()) {
    yield indexes.map((index) => chunk({ choices: [{ index, delta: { content: i === 0 ? word : ` ${word}` }, finish_reason: null }] })).join('');
  }
  let tail = indexes.map((index) => chunk({ choices: [{ index, delta: {}, finish_reason: 'stop' }] })).join('');
  if (includeUsage) {
    const completionTokens = words.length * choices;
    tail += chunk({ choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } });
  }
  yield `${tail}data: [DONE]\n\n`;
}

function errorReply(format: Format, message: string): unknown {
  return format === 'anthropic'
    ? { type: 'error', error: { type: 'invalid_request_error', message } }
    : { error: { type: 'invalid_request_error', code: null, message } };
}

export async function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const latencyMs = options.latencyMs ?? 0;
  const chunkDelayMs = options.chunkDelayMs ?? 0;
  const maxReplyWords = options.maxReplyWords ?? 24;
  const stats: MockUpstreamStats = { requests: 0, aborted: 0 };

  async function chat(format: Format, req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests += 1;
    const body = await readJsonBody(req, 8 * 1024 * 1024).catch(() => undefined);
    const fields = body && typeof body === 'object' ? (body as Record<string, unknown>) : null;
    if (!fields || typeof fields.model !== 'string' || !Array.isArray(fields.messages)) {
      return sendJson(res, 400, errorReply(format, 'model and messages are required'));
    }
    const streamOptions = fields.stream_options as { include_usage?: unknown } | undefined;
    const reply: Reply = {
      format,
      model: fields.model,
      id: `${format === 'anthropic' ? 'msg_mock_' : 'chatcmpl-mock-'}${randomBytes(12).toString('hex')}`,
      promptTokens: estimatePromptTokens(fields),
      words: mockReplyWords(fields, maxReplyWords),
      choices: format === 'openai' && typeof fields.n === 'number' && Number.isSafeInteger(fields.n) && fields.n > 1 ? fields.n : 1,
      includeUsage: streamOptions?.include_usage === true,
    };
    await pause(latencyMs, res);
    if (res.destroyed) return;
    if (fields.stream !== true) return sendJson(res, 200, jsonReply(reply));

    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    let first = true;
    for (const event of sseEvents(reply)) {
      if (!first) await pause(chunkDelayMs, res);
      first = false;
      if (res.destroyed) {
        stats.aborted += 1;
        return;
      }
      if (!res.write(event)) await writable(res);
    }
    res.end();
  }

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const route = req.method === 'POST' && path === '/v1/chat/completions' ? 'openai' : req.method === 'POST' && path === '/v1/messages' ? 'anthropic' : null;
    if (route) {
      chat(route, req, res).catch(() => res.destroy());
      return;
    }
    req.resume();
    sendJson(res, 404, errorReply('openai', `no route ${req.method} ${path} on the mock upstream`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

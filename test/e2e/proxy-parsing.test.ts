// The example gateway's pure input parts: upstream usage (JSON and SSE), API-key handling and the configuration.
import { expect } from 'chai';
import { extractApiKey, generateApiKey, hashApiKey, secretsEqual } from '../../examples/proxy/api-keys.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../examples/proxy/json-body.js';
import { ConfigError, loadConfig } from '../../examples/proxy/config.js';
import { mockReplyWords } from '../../examples/proxy/mock-upstream.js';
import { SseUsageParser, usageFromJson } from '../../examples/proxy/usage-parser.js';

const encoder = new TextEncoder();

/** Feeds the text in pieces of `size` bytes, so events and even UTF-8 characters are split. */
function parse(format: 'openai' | 'anthropic', text: string, size: number) {
  const parser = new SseUsageParser(format);
  const bytes = encoder.encode(text);
  for (let i = 0; i < bytes.length; i += size) parser.push(bytes.subarray(i, i + size));
  parser.end();
  return parser.snapshot;
}

const OPENAI_STREAM = `${[
  'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
  'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Grüße"}}]}',
  'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":" 🌍!"}}]}',
  'data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}',
  'data: [DONE]',
].join('\n\n')}\n\n`;

const ANTHROPIC_STREAM = `${[
  'event: message_start\r\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":1}}}',
  'event: ping\r\ndata: {"type":"ping"}',
  'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello there"}}',
  'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}',
  'event: message_stop\r\ndata: {"type":"message_stop"}',
].join('\r\n\r\n')}\r\n\r\n`;

describe('example proxy: upstream usage parsing', () => {
  for (const size of [1, 3, 7, 64, 100_000]) {
    it(`reads OpenAI SSE usage, id and text split into ${size}-byte chunks`, () => {
      expect(parse('openai', OPENAI_STREAM, size)).to.deep.equal({
        responseId: 'chatcmpl-1',
        inputTokens: 11,
        outputTokens: 3,
        outputChars: 'Grüße 🌍!'.length,
      });
    });

    it(`reads Anthropic SSE (CRLF) usage, id and text split into ${size}-byte chunks`, () => {
      expect(parse('anthropic', ANTHROPIC_STREAM, size)).to.deep.equal({ responseId: 'msg_1', inputTokens: 25, outputTokens: 7, outputChars: 11 });
    });
  }

  it('reports what was seen so far when a stream stops early', () => {
    const cut = ANTHROPIC_STREAM.slice(0, ANTHROPIC_STREAM.indexOf('event: message_delta'));
    expect(parse('anthropic', cut, 5)).to.deep.equal({ responseId: 'msg_1', inputTokens: 25, outputTokens: 1, outputChars: 11 });
    const openaiCut = OPENAI_STREAM.slice(0, OPENAI_STREAM.indexOf('data: {"id":"chatcmpl-1","choices":[],"usage"'));
    expect(parse('openai', openaiCut, 5)).to.include({ inputTokens: null, outputTokens: null });
  });

  it('reads a final event that has no blank line after it, and skips junk', () => {
    const text =
      'data: not json\n\n: a comment\n\ndata: {"id":"x","usage":{"prompt_tokens":-1,"completion_tokens":2.5}}\n\ndata: {"usage":{"prompt_tokens":4,"completion_tokens":2}}';
    expect(parse('openai', text, 4)).to.include({ responseId: 'x', inputTokens: 4, outputTokens: 2 });
  });

  it('skips an oversized event without losing the ones after it', () => {
    const huge = `data: {"choices":[{"delta":{"content":"${'a'.repeat(1_100_000)}"}}]}\n\n`;
    const text = `${huge}data: {"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n`;
    expect(parse('openai', text, 65_536)).to.include({ inputTokens: 1, outputTokens: 2 });
  });

  it('reads usage from complete JSON bodies of both APIs', () => {
    expect(
      usageFromJson('openai', {
        id: 'chatcmpl-2',
        choices: [{ message: { content: 'abc' } }],
        usage: { prompt_tokens: 5, completion_tokens: 6 },
      }),
    ).to.deep.equal({ responseId: 'chatcmpl-2', inputTokens: 5, outputTokens: 6, outputChars: 3 });
    expect(
      usageFromJson('anthropic', {
        id: 'msg_2',
        content: [{ type: 'text', text: 'hey' }],
        usage: { input_tokens: 9, cache_creation_input_tokens: 1, output_tokens: 4 },
      }),
    ).to.deep.equal({ responseId: 'msg_2', inputTokens: 10, outputTokens: 4, outputChars: 3 });
    expect(usageFromJson('openai', 'nonsense')).to.deep.equal({ responseId: null, inputTokens: null, outputTokens: null, outputChars: 0 });
  });
});

describe('example proxy: API keys', () => {
  it('generates distinct sk- keys and stores only a SHA-256', () => {
    const a = generateApiKey();
    const b = generateApiKey();
    expect(a).to.match(/^sk-[A-Za-z0-9_-]{32}$/);
    expect(a).not.to.equal(b);
    // The FIPS 180-2 test vector: hex SHA-256 of "abc".
    expect(hashApiKey('abc')).to.equal('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hashApiKey(a))
      .to.match(/^[0-9a-f]{64}$/)
      .and.not.to.include(a);
  });

  it('reads Bearer and x-api-key headers, and tells a malformed key from a missing one (regression: a malformed key was answered "Missing API key")', () => {
    expect(extractApiKey({ authorization: 'Bearer sk-abcdefgh' })).to.equal('sk-abcdefgh');
    expect(extractApiKey({ authorization: 'bearer   sk-abcdefgh ' })).to.equal('sk-abcdefgh');
    expect(extractApiKey({ 'x-api-key': 'sk-abcdefgh' })).to.equal('sk-abcdefgh');
    expect(extractApiKey({ authorization: 'Basic dXNlcjpwYXNz' })).to.equal('malformed');
    expect(extractApiKey({ authorization: 'Bearer short' })).to.equal('malformed');
    expect(extractApiKey({ 'x-api-key': 'has a space in it' })).to.equal('malformed');
    expect(extractApiKey({ 'x-api-key': '  ' })).to.equal('missing');
    expect(extractApiKey({})).to.equal('missing');
  });

  it('measures JSON nesting without parsing, skipping strings and their escapes', () => {
    expect(nestsDeeperThan('[[[]]]', 3)).to.equal(false);
    expect(nestsDeeperThan('[[[[]]]]', 3)).to.equal(true);
    expect(nestsDeeperThan('{"a":"[[[[[[","b":"\\"}', 1)).to.equal(false);
    expect(nestsDeeperThan('{"a":"\\"}[[', 2)).to.equal(false);
    expect(nestsDeeperThan('['.repeat(5000) + ']'.repeat(5000), MAX_JSON_DEPTH)).to.equal(true);
    expect(nestsDeeperThan('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).to.equal(false);
  });

  it('compares secrets of different lengths without throwing', () => {
    expect(secretsEqual('a-long-admin-token', 'a-long-admin-token')).to.equal(true);
    expect(secretsEqual('a', 'a-long-admin-token')).to.equal(false);
  });
});

describe('example proxy: configuration', () => {
  it('defaults to the embedded setup with no environment', () => {
    const config = loadConfig({});
    expect(config).to.include({ port: 3000, databaseUrl: null, redisUrl: null, redisClusterNodes: null, upstreamUrl: null, adminToken: null, timezone: 'UTC' });
    expect(config.maxBodyBytes).to.equal(1024 * 1024);
  });

  it('reads every variable', () => {
    const config = loadConfig({
      PORT: '8080',
      DATABASE_URL: 'postgres://u:secret@db:5432/app',
      REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7001',
      UPSTREAM_URL: 'https://api.example.com/v1/',
      UPSTREAM_API_KEY: 'up-key',
      ADMIN_TOKEN: 'a'.repeat(20),
      BILLING_TIMEZONE: 'Europe/Berlin',
    });
    expect(config).to.include({ port: 8080, upstreamUrl: 'https://api.example.com', upstreamApiKey: 'up-key', timezone: 'Europe/Berlin' });
    expect(config.redisClusterNodes).to.deep.equal([
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
    ]);
  });

  const bad: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /^PORT: /],
    [{ PORT: '70000' }, /^PORT: /],
    [{ DATABASE_URL: 'mysql://x' }, /^DATABASE_URL: must use postgres:/],
    [{ REDIS_URL: 'redis://a', REDIS_CLUSTER_NODES: 'a:1' }, /^REDIS_CLUSTER_NODES: set either/],
    [{ REDIS_CLUSTER_NODES: 'nohostport' }, /^REDIS_CLUSTER_NODES: /],
    [{ BILLING_TIMEZONE: 'Mars/Olympus' }, /^BILLING_TIMEZONE: .*Mars\/Olympus/],
    [{ ADMIN_TOKEN: 'short' }, /^ADMIN_TOKEN: /],
    [{ MAX_BODY_BYTES: '-1' }, /^MAX_BODY_BYTES: /],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: /],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)} naming the variable`, () => {
      expect(() => loadConfig(env)).to.throw(ConfigError, message);
    });
  }

  it('never echoes a database URL, which may hold a password', () => {
    expect(() => loadConfig({ DATABASE_URL: 'mysql://user:hunter2@db' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.does.not.include('hunter2');
  });
});

describe('example proxy: mock upstream replies', () => {
  it('answers max_tokens words, capped, deterministically', () => {
    expect(mockReplyWords({ max_tokens: 5 }, 24)).to.have.length(5);
    expect(mockReplyWords({ max_completion_tokens: 3 }, 24)).to.deep.equal(mockReplyWords({ max_tokens: 3 }, 24));
    expect(mockReplyWords({}, 24)).to.have.length(24);
    expect(mockReplyWords({ max_tokens: 500 }, 100)).to.have.length(100);
  });
});

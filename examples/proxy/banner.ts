// The start-up banner: where the gateway listens, the demo keys, the admin token and ready-to-paste curl commands.
import type { DemoKey } from './seed.js';

export interface BannerInput {
  baseUrl: string;
  upstreamUrl: string;
  usingMockUpstream: boolean;
  storage: string;
  cache: string;
  demoKeys: DemoKey[];
  /** Shown only when it was generated for this run (a configured ADMIN_TOKEN is never printed). */
  generatedAdminToken: string | null;
}

/** Single-quotes a value for POSIX shells. */
function sh(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function openaiCurl(baseUrl: string, key: string, options: { model: string; stream: boolean; content: string }): string {
  const body = JSON.stringify({ model: options.model, stream: options.stream, messages: [{ role: 'user', content: options.content }] });
  return `curl -sS${options.stream ? 'N' : ''} ${baseUrl}/v1/chat/completions -H ${sh(`Authorization: Bearer ${key}`)} -H 'Content-Type: application/json' -d ${sh(body)}`;
}

export function anthropicCurl(baseUrl: string, key: string, options: { model: string; stream: boolean; content: string }): string {
  const body = JSON.stringify({ model: options.model, max_tokens: 64, stream: options.stream, messages: [{ role: 'user', content: options.content }] });
  return `curl -sS${options.stream ? 'N' : ''} ${baseUrl}/v1/messages -H ${sh(`x-api-key: ${key}`)} -H 'anthropic-version: 2023-06-01' -H 'Content-Type: application/json' -d ${sh(body)}`;
}

export function formatBanner(input: BannerInput): string {
  const { baseUrl, demoKeys } = input;
  const lines = [
    '',
    `Billing gateway listening on ${baseUrl}`,
    `  storage: ${input.storage}   cache: ${input.cache}`,
    `  upstream: ${input.usingMockUpstream ? `bundled mock (${input.upstreamUrl})` : input.upstreamUrl}`,
    '',
  ];
  if (demoKeys.length === 0) {
    lines.push('No demo keys in the data folder (the database was seeded elsewhere); create keys with POST /admin/users/:id/keys.', '');
  } else {
    lines.push('Demo API keys (stored hashed; plaintext only in the data folder):');
    for (const demo of demoKeys) lines.push(`  ${demo.userId.padEnd(6)} ${demo.key}   ${demo.description}`);
    lines.push('');
  }
  const key = (userId: string) => demoKeys.find((k) => k.userId === userId)?.key;
  const alice = key('alice') ?? demoKeys[0]?.key;
  if (alice) {
    lines.push(
      'Try it:',
      '  # a chat completion (OpenAI style)',
      `  ${openaiCurl(baseUrl, alice, { model: 'gpt-4o-mini', stream: false, content: 'Hello!' })}`,
      '  # the same, streamed',
      `  ${openaiCurl(baseUrl, alice, { model: 'gpt-4o-mini', stream: true, content: 'Hello!' })}`,
      '  # Anthropic style',
      `  ${anthropicCurl(baseUrl, alice, { model: 'claude-3-5-haiku-latest', stream: false, content: 'Hello!' })}`,
      '  # balance, key windows and recent charges',
      `  curl -sS ${baseUrl}/v1/usage -H ${sh(`Authorization: Bearer ${alice}`)}`,
    );
  }
  const dave = key('dave');
  if (dave) {
    lines.push(
      '  # dave has 0.0001 USD: the worst case of this call (every allowed output token) is reserved first, so it answers 403',
      `  ${openaiCurl(baseUrl, dave, { model: 'gpt-4o', stream: false, content: 'Hello!' })}`,
    );
  }
  if (input.generatedAdminToken) {
    lines.push('', `Admin token (generated for this run; set ADMIN_TOKEN to choose one): ${input.generatedAdminToken}`);
    if (dave) {
      lines.push(
        '  # top dave up; his next request goes through',
        `  curl -sS -X POST ${baseUrl}/admin/users/dave/top-up -H ${sh(`Authorization: Bearer ${input.generatedAdminToken}`)} -H 'Content-Type: application/json' -d '{"amountUsd":"5.00"}'`,
      );
    }
  } else {
    lines.push('', 'Admin routes: /admin/… with "Authorization: Bearer $ADMIN_TOKEN".');
  }
  lines.push('');
  return lines.join('\n');
}

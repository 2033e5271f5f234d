// Calls the upstream model API (OpenAI- or Anthropic-style) with Node's fetch, forwarding only what it needs.
import type { IncomingHttpHeaders } from 'node:http';
import type { ApiFormat } from './gateway-errors.js';

export interface UpstreamTarget {
  /** Base URL; the route's /v1/… path is appended. */
  baseUrl: string;
  /** The gateway's own credential for the upstream; the caller's key is never forwarded. */
  apiKey: string | null;
}

const PATHS: Record<ApiFormat, string> = { openai: '/v1/chat/completions', anthropic: '/v1/messages' };

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The body sent upstream. Streamed OpenAI calls ask for the final usage chunk
 * (`stream_options.include_usage`), without which the stream carries no token counts.
 */
export function upstreamBody(format: ApiFormat, body: Record<string, unknown>): Record<string, unknown> {
  if (format !== 'openai' || body.stream !== true) return body;
  const options = body.stream_options && typeof body.stream_options === 'object' ? body.stream_options : {};
  return { ...body, stream_options: { ...options, include_usage: true } };
}

export function callUpstream(
  target: UpstreamTarget,
  format: ApiFormat,
  body: Record<string, unknown>,
  clientHeaders: IncomingHttpHeaders,
  signal: AbortSignal,
): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: body.stream === true ? 'text/event-stream' : 'application/json' };
  if (format === 'anthropic') {
    headers['anthropic-version'] = header(clientHeaders, 'anthropic-version') ?? '2023-06-01';
    const beta = header(clientHeaders, 'anthropic-beta');
    if (beta) headers['anthropic-beta'] = beta;
    if (target.apiKey) headers['x-api-key'] = target.apiKey;
  } else if (target.apiKey) {
    headers.authorization = `Bearer ${target.apiKey}`;
  }
  return fetch(`${target.baseUrl}${PATHS[format]}`, {
    method: 'POST',
    headers,
    body: JSON.stringify(upstreamBody(format, body)),
    signal,
  });
}

// API keys: generation, SHA-256 hashing (only the hash is stored) and extraction from request headers.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** A new secret key: "sk-" and 32 URL-safe characters (192 random bits). */
export function generateApiKey(): string {
  return `sk-${randomBytes(24).toString('base64url')}`;
}

/** Hex SHA-256 of the key; keys are high-entropy, so an unsalted fast hash is enough for lookup. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A short, non-secret label for logs and listings, e.g. "sk-AbC1…". */
export function keyLabel(key: string): string {
  return `${key.slice(0, 7)}…`;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;
const KEY_SHAPE = /^[\x21-\x7e]{8,256}$/;

/**
 * The caller's key from `Authorization: Bearer …` or (Anthropic style) `x-api-key`: the key,
 * 'missing' when neither header is sent, or 'malformed' when one is sent but holds no key of a
 * possible shape (so the client is told which mistake it made).
 */
export function extractApiKey(headers: IncomingHttpHeaders): string | 'missing' | 'malformed' {
  const authorization = headers.authorization;
  if (authorization) {
    const key = BEARER.exec(authorization)?.[1];
    return key && KEY_SHAPE.test(key) ? key : 'malformed';
  }
  const header = headers['x-api-key'];
  const key = (Array.isArray(header) ? header[0] : header)?.trim();
  if (key === undefined || key === '') return 'missing';
  return KEY_SHAPE.test(key) ? key : 'malformed';
}

/** Constant-time comparison of two secrets (compares digests, so lengths may differ). */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

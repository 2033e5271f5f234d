// API-key authentication: the key's SHA-256 is looked up (cached, see principal-cache.ts); unknown or
// disabled keys get 401 in the route's format; a database that cannot answer a cold key, 503.
import type { Context, Middleware, Next } from 'koa';
import { extractApiKey, hashApiKey } from './api-keys.js';
import { gatewayErrors } from './gateway-errors.js';
import type { Platform } from './prices.js';
import type { PrincipalLookup } from './principal-cache.js';
import { gatewayState } from './request-state.js';
import { buildSubject } from './subject.js';

export interface AuthOptions {
  principals: PrincipalLookup;
  /** The route's platform: builds the billing subject; null for routes without billing. */
  platform: Platform | null;
}

export function authenticate({ principals, platform }: AuthOptions): Middleware {
  return async function authenticate(ctx: Context, next: Next): Promise<void> {
    const key = extractApiKey(ctx.req.headers);
    if (key === 'missing') throw gatewayErrors.unauthorized('Missing API key: send "Authorization: Bearer sk-…" or "x-api-key: sk-…".');
    if (key === 'malformed')
      throw gatewayErrors.unauthorized(
        'Malformed API key: expected "Authorization: Bearer sk-…" or "x-api-key: sk-…" with the key (8-256 printable characters).',
      );
    const principal = await principals.find(hashApiKey(key));
    // One answer for unknown and disabled keys, so the response does not reveal which keys exist.
    if (!principal?.key.enabled) throw gatewayErrors.unauthorized();
    const state = gatewayState(ctx);
    state.principal = principal;
    if (platform) state.subject = buildSubject(principal, platform);
    await next();
  };
}

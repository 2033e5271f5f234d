// API-key authentication: the key's SHA-256 is looked up; unknown or disabled keys get 401 in the route's format.
import type { Context, Middleware, Next } from 'koa';
import { extractApiKey, hashApiKey } from './api-keys.js';
import { gatewayErrors } from './gateway-errors.js';
import type { GatewayRepository } from './gateway-repo.js';
import type { Platform } from './prices.js';
import { gatewayState } from './request-state.js';
import { buildSubject } from './subject.js';

export interface AuthOptions {
  repo: GatewayRepository;
  /** The route's platform: builds the billing subject; null for routes without billing. */
  platform: Platform | null;
}

export function authenticate({ repo, platform }: AuthOptions): Middleware {
  return async function authenticate(ctx: Context, next: Next): Promise<void> {
    const key = extractApiKey(ctx.req.headers);
    if (!key) throw gatewayErrors.unauthorized('Missing API key: send "Authorization: Bearer sk-…" or "x-api-key: sk-…".');
    const principal = await repo.findPrincipalByKeyHash(hashApiKey(key));
    // One answer for unknown and disabled keys, so the response does not reveal which keys exist.
    if (!principal || !principal.key.enabled) throw gatewayErrors.unauthorized();
    const state = gatewayState(ctx);
    state.principal = principal;
    if (platform) state.subject = buildSubject(principal, platform);
    await next();
  };
}

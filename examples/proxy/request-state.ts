// What the gateway's middleware learn about a request, kept on ctx.state.gateway for the ones after them.
import type { Context } from 'koa';
import type { BillingSubject } from '../../lib/index.js';
import type { ApiFormat } from './gateway-errors.js';
import type { Principal } from './gateway-repo.js';
import type { ModelPrice } from './prices.js';

/** A validated chat request (OpenAI chat completion or Anthropic message). */
export interface CompletionRequest {
  body: Record<string, unknown>;
  price: ModelPrice;
  stream: boolean;
  /** Prompt tokens estimated from the body: the floor charged when the upstream reports nothing. */
  promptEstimate: number;
  /** Prompt tokens the request cannot exceed: what the reservation holds (see cost-estimate.ts). */
  promptBound: number;
}

export interface GatewayRequestState {
  /** The API format of the route, for error bodies. */
  format: ApiFormat;
  principal?: Principal;
  subject?: BillingSubject;
  completion?: CompletionRequest;
}

declare module 'koa' {
  interface DefaultState {
    gateway?: GatewayRequestState;
  }
}

export function gatewayState(ctx: Context): GatewayRequestState {
  const state = ctx.state.gateway as GatewayRequestState | undefined;
  if (state) return state;
  const created: GatewayRequestState = { format: ctx.path === '/v1/messages' ? 'anthropic' : 'openai' };
  ctx.state.gateway = created;
  return created;
}

/** The authenticated principal; the route mounted `authenticate` before this point. */
export function principalOf(ctx: Context): Principal {
  const principal = gatewayState(ctx).principal;
  if (!principal) throw new Error('authenticate() must run before this middleware');
  return principal;
}

// Routes mounted without the billing chain: the model list, the caller's own usage, the health probe and the metrics.
import { Router } from '@koa/router';
import type { Context } from 'koa';
import type { Registry } from 'prom-client';
import type { BillingCore } from '../../lib/index.js';
import { authenticate } from './auth.js';
import { PRICE_TABLE } from './prices.js';
import type { PrincipalLookup } from './principal-cache.js';
import { principalOf } from './request-state.js';

export interface InfoRoutesOptions {
  principals: PrincipalLookup;
  core: BillingCore;
  /** The registry the billing metrics (and the process metrics) are registered on. */
  registry: Registry;
}

/** Fixed "created" time of the listed models (the price table has no dates). */
const MODELS_CREATED = Math.floor(Date.UTC(2025, 0, 1) / 1000);

function modelList(ctx: Context): unknown {
  // Anthropic SDKs call /v1/models with an anthropic-version header and expect their own shape.
  if (ctx.get('anthropic-version')) {
    const data = PRICE_TABLE.map((p) => ({ type: 'model', id: p.model, display_name: p.model, created_at: new Date(MODELS_CREATED * 1000).toISOString() }));
    return { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
  }
  return {
    object: 'list',
    data: PRICE_TABLE.map((p) => ({
      id: p.model,
      object: 'model',
      created: MODELS_CREATED,
      owned_by: p.ownedBy,
      // Not part of the OpenAI shape: what this gateway charges (USD per 1M tokens).
      pricing: { input_usd_per_mtok: p.inputUsdPerMTok, output_usd_per_mtok: p.outputUsdPerMTok },
    })),
  };
}

export function infoRoutes({ principals, core, registry }: InfoRoutesOptions): Router {
  const router = new Router();
  const auth = authenticate({ principals, platform: null });

  router.get('/v1/models', auth, (ctx) => {
    ctx.body = modelList(ctx);
  });

  router.get('/v1/usage', auth, async (ctx) => {
    const { user, key, group } = principalOf(ctx);
    const limit = Number(ctx.query.limit ?? 20);
    const [balanceUsd, windows, recent] = await Promise.all([
      core.getBalance(user.id),
      core.getApiKeyWindows(user.id, key.id),
      core.listUsage(user.id, Number.isSafeInteger(limit) && limit > 0 ? Math.min(limit, 100) : 20),
    ]);
    ctx.body = {
      user: { id: user.id, name: user.name, rpmLimit: user.rpmLimit, maxConcurrency: user.maxConcurrency },
      group: group && { id: group.id, name: group.name, billingType: group.billingType, rateMultiplier: group.rateMultiplier, rpmLimit: group.rpmLimit },
      balanceUsd,
      apiKey: {
        id: key.id,
        label: key.label,
        limits: { rateLimit5hUsd: key.rateLimit5hUsd, rateLimit1dUsd: key.rateLimit1dUsd, rateLimit7dUsd: key.rateLimit7dUsd },
        windows: windows.windows,
      },
      recent,
    };
  });

  router.get('/healthz', async (ctx) => {
    const health = await core.health();
    const ok = health.store && health.cache !== false;
    ctx.status = ok ? 200 : 503;
    ctx.body = { status: ok ? 'ok' : 'degraded', ...health };
  });

  // Prometheus text format; no per-user or per-key series exist, so nothing here identifies a caller.
  router.get('/metrics', async (ctx) => {
    ctx.type = registry.contentType;
    ctx.body = await registry.metrics();
  });

  return router;
}

// Admin routes behind the admin bearer token. Billing writes go through core.admin, which updates the store and
// the cache together, so the very next request (on any gateway process sharing the cache) sees the change.
import { Router } from '@koa/router';
import type { Context, Next } from 'koa';
import type { BillingCore } from '../../lib/index.js';
import { generateApiKey, hashApiKey, keyLabel, secretsEqual } from './api-keys.js';
import { gatewayErrors } from './gateway-errors.js';
import type { GatewayRepository, KeyLimits, UserRecord } from './gateway-repo.js';
import { InputError, concurrencyValue, gatewayId, objectBody, optionalName, optionalUsd, requiredUsd, rpmValue } from './input.js';
import { readJsonBody } from './json-body.js';
import type { PrincipalLookup } from './principal-cache.js';

export interface AdminRoutesOptions {
  repo: GatewayRepository;
  /** Cached key lookups: dropped for a user whenever their keys or group change. */
  principals: PrincipalLookup;
  core: BillingCore;
  adminToken: string;
  /** Clock for created-at stamps and subscription defaults. */
  now: () => number;
}

const ADMIN_BODY_LIMIT = 64 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;

async function body(ctx: Context): Promise<Record<string, unknown>> {
  return objectBody(await readJsonBody(ctx.req, ADMIN_BODY_LIMIT));
}

function param(ctx: Context, name: string): string {
  return gatewayId((ctx.params as Record<string, string | undefined>)[name], name);
}

function keyLimits(fields: Record<string, unknown>): Partial<KeyLimits> {
  const limits: Partial<KeyLimits> = {};
  if ('rateLimit5hUsd' in fields) limits.rateLimit5hUsd = optionalUsd(fields.rateLimit5hUsd, 'rateLimit5hUsd');
  if ('rateLimit1dUsd' in fields) limits.rateLimit1dUsd = optionalUsd(fields.rateLimit1dUsd, 'rateLimit1dUsd');
  if ('rateLimit7dUsd' in fields) limits.rateLimit7dUsd = optionalUsd(fields.rateLimit7dUsd, 'rateLimit7dUsd');
  return limits;
}

/** An epoch-ms or ISO expiry, or `days` from now. */
function expiry(fields: Record<string, unknown>, nowMs: number): number {
  if (fields.expiresAt !== undefined) {
    const ms = typeof fields.expiresAt === 'number' ? fields.expiresAt : Date.parse(String(fields.expiresAt));
    if (Number.isSafeInteger(ms)) return ms;
    throw new InputError('expiresAt', 'expiresAt must be an ISO 8601 date or epoch milliseconds');
  }
  const days = fields.days ?? 30;
  if (typeof days === 'number' && Number.isInteger(days) && days >= 1 && days <= 3650) return nowMs + days * DAY_MS;
  throw new InputError('days', 'days must be a whole number from 1 to 3650');
}

export function adminRoutes({ repo, principals, core, adminToken, now }: AdminRoutesOptions): Router {
  const router = new Router({ prefix: '/admin' });

  router.use(async function adminAuth(ctx: Context, next: Next) {
    const token = /^Bearer\s+(\S+)$/i.exec(ctx.get('authorization'))?.[1];
    if (!token || !secretsEqual(token, adminToken)) throw gatewayErrors.unauthorized('Invalid or missing admin token.');
    await next();
  });

  const user = async (ctx: Context): Promise<UserRecord> => {
    const found = await repo.getUser(param(ctx, 'userId'));
    if (!found) throw gatewayErrors.notFound('No such user.');
    return found;
  };

  router.post('/users', async (ctx) => {
    const fields = await body(ctx);
    const id = gatewayId(fields.id, 'id');
    const groupId = fields.groupId === undefined || fields.groupId === null ? null : gatewayId(fields.groupId, 'groupId');
    if (groupId && !(await repo.getGroup(groupId))) throw new InputError('groupId', `no group ${JSON.stringify(groupId)}`);
    const record: UserRecord = {
      id,
      name: optionalName(fields.name, 'name', id),
      groupId,
      rpmLimit: fields.rpmLimit === undefined ? 0 : rpmValue(fields.rpmLimit, 'rpmLimit'),
      maxConcurrency: fields.maxConcurrency === undefined ? 0 : concurrencyValue(fields.maxConcurrency, 'maxConcurrency'),
    };
    const balance = fields.balanceUsd === undefined ? null : requiredUsd(fields.balanceUsd, 'balanceUsd');
    // One insert decides, so concurrent creates of one id get one 201 and 409s, never a constraint error.
    if (!(await repo.insertUser(record, now()))) throw gatewayErrors.conflict(`user ${JSON.stringify(id)} already exists`);
    ctx.status = 201;
    ctx.body = { ...record, balanceUsd: balance === null ? null : await core.admin.setBalance(id, balance) };
  });

  router.post('/users/:userId/keys', async (ctx) => {
    const owner = await user(ctx);
    const fields = await body(ctx);
    const id = gatewayId(fields.id, 'id');
    if (await repo.getKey(id)) throw new InputError('id', `key ${JSON.stringify(id)} already exists`);
    const key = generateApiKey();
    const record = {
      id,
      userId: owner.id,
      label: keyLabel(key),
      name: optionalName(fields.name, 'name', id),
      enabled: true,
      rateLimit5hUsd: null,
      rateLimit1dUsd: null,
      rateLimit7dUsd: null,
      ...keyLimits(fields),
    };
    await repo.insertKey(record, hashApiKey(key), now());
    ctx.status = 201;
    // The only time the plaintext key is shown.
    ctx.body = { ...record, key };
  });

  router.post('/users/:userId/top-up', async (ctx) => {
    const target = await user(ctx);
    const amountUsd = requiredUsd((await body(ctx)).amountUsd, 'amountUsd');
    ctx.body = { userId: target.id, balanceUsd: await core.admin.topUp(target.id, amountUsd) };
  });

  router.put('/users/:userId/balance', async (ctx) => {
    const target = await user(ctx);
    const balanceUsd = requiredUsd((await body(ctx)).balanceUsd, 'balanceUsd', true);
    ctx.body = { userId: target.id, balanceUsd: await core.admin.setBalance(target.id, balanceUsd) };
  });

  router.put('/users/:userId/subscription', async (ctx) => {
    const target = await user(ctx);
    const fields = await body(ctx);
    const status = fields.status ?? 'active';
    if (status !== 'active' && status !== 'revoked') throw new InputError('status', 'status must be "active" or "revoked"');
    const groupId = fields.groupId === undefined ? target.groupId : gatewayId(fields.groupId, 'groupId');
    const group = groupId === null ? null : await repo.getGroup(groupId);
    if (group?.billingType !== 'subscription') throw new InputError('groupId', 'groupId must name a subscription group');
    const subscription = await core.admin.upsertSubscription({ userId: target.id, groupId: group.id, status, expiresAt: expiry(fields, now()) });
    // Members of a subscription group are billed by their plan; assigning one moves the user into the group.
    if (status === 'active' && target.groupId !== group.id) {
      await repo.updateUser(target.id, { groupId: group.id });
      await principals.invalidateUser(target.id);
    }
    ctx.body = { userId: target.id, groupId: group.id, ...subscription };
  });

  router.put('/users/:userId/platform-quotas/:platform', async (ctx) => {
    const target = await user(ctx);
    const platform = (ctx.params as { platform?: string }).platform;
    if (platform !== 'openai' && platform !== 'anthropic') throw new InputError('platform', 'platform must be "openai" or "anthropic"');
    const fields = await body(ctx);
    const limits = {
      dailyLimitUsd: optionalUsd(fields.dailyLimitUsd, 'dailyLimitUsd'),
      weeklyLimitUsd: optionalUsd(fields.weeklyLimitUsd, 'weeklyLimitUsd'),
      monthlyLimitUsd: optionalUsd(fields.monthlyLimitUsd, 'monthlyLimitUsd'),
    };
    await core.admin.setPlatformQuota(target.id, platform, limits);
    ctx.body = { userId: target.id, platform, ...limits };
  });

  router.put('/users/:userId/rpm-override', async (ctx) => {
    const target = await user(ctx);
    const fields = await body(ctx);
    const groupId = fields.groupId === undefined ? target.groupId : gatewayId(fields.groupId, 'groupId');
    if (groupId === null) throw new InputError('groupId', 'the user has no group; name one with groupId');
    if (!(await repo.getGroup(groupId))) throw new InputError('groupId', `no group ${JSON.stringify(groupId)}`);
    const rpm = fields.rpm === null ? null : rpmValue(fields.rpm, 'rpm');
    await core.admin.setRpmOverride(target.id, groupId, rpm);
    ctx.body = { userId: target.id, groupId, rpm };
  });

  router.put('/users/:userId/concurrency', async (ctx) => {
    const target = await user(ctx);
    const fields = await body(ctx);
    const maxConcurrency = concurrencyValue(fields.maxConcurrency, 'maxConcurrency');
    await repo.updateUser(target.id, { maxConcurrency });
    // The cap travels in the cached principal: every process must read it again.
    await principals.invalidateUser(target.id);
    ctx.body = { userId: target.id, maxConcurrency };
  });

  router.put('/keys/:keyId/limits', async (ctx) => {
    const keyId = param(ctx, 'keyId');
    const fields = await body(ctx);
    if (fields.enabled !== undefined && typeof fields.enabled !== 'boolean') throw new InputError('enabled', 'enabled must be a boolean');
    const updated = await repo.updateKey(keyId, { ...keyLimits(fields), ...(typeof fields.enabled === 'boolean' && { enabled: fields.enabled }) });
    if (!updated) throw gatewayErrors.notFound('No such key.');
    // Limits and `enabled` travel in the cached principal: every process must read them again.
    await principals.invalidateUser(updated.userId);
    ctx.body = updated;
  });

  router.post('/keys/:keyId/reset-windows', async (ctx) => {
    const key = await repo.getKey(param(ctx, 'keyId'));
    if (!key) throw gatewayErrors.notFound('No such key.');
    await core.admin.resetApiKeyWindows(key.userId, key.id);
    ctx.body = { keyId: key.id, windows: (await core.getApiKeyWindows(key.userId, key.id)).windows };
  });

  return router;
}

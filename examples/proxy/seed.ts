// Demo data for the embedded default: groups, four users with hashed API keys, and their billing state through
// core.admin. Seeded once, when the gateway tables are empty; the plaintext keys live only in the data folder.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Knex } from 'knex';
import type { BillingCore } from '../../lib/index.js';
import { generateApiKey, hashApiKey, keyLabel } from './api-keys.js';
import { GatewayRepository, type GroupRecord, type KeyRecord, type UserRecord } from './gateway-repo.js';
import type { Logger } from './logger.js';

export interface DemoKey {
  userId: string;
  keyId: string;
  /** The plaintext key (the database holds only its SHA-256). */
  key: string;
  description: string;
}

export const DEMO_KEYS_FILE = 'demo-keys.json';
const DAY_MS = 24 * 60 * 60 * 1000;

export const DEMO_GROUPS: readonly GroupRecord[] = [
  {
    id: 'standard',
    name: 'Pay as you go',
    billingType: 'standard',
    rateMultiplier: '1',
    dailyLimitUsd: null,
    weeklyLimitUsd: null,
    monthlyLimitUsd: null,
    rpmLimit: 0,
  },
  {
    id: 'partner',
    name: 'Partner discount (x0.8)',
    billingType: 'standard',
    rateMultiplier: '0.8',
    dailyLimitUsd: null,
    weeklyLimitUsd: null,
    monthlyLimitUsd: null,
    rpmLimit: 0,
  },
  {
    id: 'pro',
    name: 'Pro plan (subscription)',
    billingType: 'subscription',
    rateMultiplier: '1',
    dailyLimitUsd: '2.00000000',
    weeklyLimitUsd: '10.00000000',
    monthlyLimitUsd: '30.00000000',
    rpmLimit: 30,
  },
];

interface DemoUser {
  user: UserRecord;
  key: Omit<KeyRecord, 'label'>;
  description: string;
  /** Billing state, applied through core.admin. */
  setup(core: BillingCore, nowMs: number): Promise<unknown>;
}

const noKeyLimits = { rateLimit5hUsd: null, rateLimit1dUsd: null, rateLimit7dUsd: null };

export const DEMO_USERS: readonly DemoUser[] = [
  {
    user: { id: 'alice', name: 'Alice', groupId: 'standard', rpmLimit: 60, maxConcurrency: 0 },
    key: { id: 'alice-key', userId: 'alice', name: 'Alice laptop', enabled: true, ...noKeyLimits, rateLimit5hUsd: '5.00000000' },
    description: 'balance user: 10 USD prepaid, 60 requests/min, key capped at 5 USD per 5 h',
    setup: (core) => core.admin.setBalance('alice', '10.00'),
  },
  {
    user: { id: 'bob', name: 'Bob', groupId: 'pro', rpmLimit: 0, maxConcurrency: 0 },
    key: { id: 'bob-key', userId: 'bob', name: 'Bob CI', enabled: true, ...noKeyLimits },
    description: 'subscription user: Pro plan for 30 days (2 USD/day, 10/week, 30/month, 30 requests/min)',
    setup: (core, nowMs) => core.admin.upsertSubscription({ userId: 'bob', groupId: 'pro', expiresAt: nowMs + 30 * DAY_MS, status: 'active' }),
  },
  {
    user: { id: 'carol', name: 'Carol', groupId: 'partner', rpmLimit: 0, maxConcurrency: 2 },
    key: { id: 'carol-key', userId: 'carol', name: 'Carol app', enabled: true, ...noKeyLimits },
    description: 'partner (x0.8 prices) with an Anthropic quota of 0.01 USD/day, at most 2 requests at once',
    setup: async (core) => {
      await core.admin.setBalance('carol', '10.00');
      await core.admin.setPlatformQuota('carol', 'anthropic', { dailyLimitUsd: '0.01', weeklyLimitUsd: null, monthlyLimitUsd: null });
    },
  },
  {
    user: { id: 'dave', name: 'Dave', groupId: 'standard', rpmLimit: 0, maxConcurrency: 0 },
    key: { id: 'dave-key', userId: 'dave', name: 'Dave script', enabled: true, ...noKeyLimits },
    description: 'nearly out of money: 0.0001 USD left (a gpt-4o call cannot reserve its worst case: 403)',
    setup: (core) => core.admin.setBalance('dave', '0.0001'),
  },
];

async function readDemoKeys(dataDir: string, logger: Logger): Promise<DemoKey[]> {
  try {
    const parsed = JSON.parse(await fs.readFile(path.join(dataDir, DEMO_KEYS_FILE), 'utf8')) as { keys?: DemoKey[] };
    return Array.isArray(parsed.keys) ? parsed.keys : [];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn({ err }, `unreadable ${DEMO_KEYS_FILE}`);
    return [];
  }
}

async function writeDemoKeys(dataDir: string, keys: DemoKey[]): Promise<void> {
  await fs.mkdir(dataDir, { recursive: true });
  const note = 'Demo API keys of the example gateway. Secret: the database stores only their SHA-256. Delete this folder to reseed.';
  await fs.writeFile(path.join(dataDir, DEMO_KEYS_FILE), `${JSON.stringify({ note, keys }, null, 2)}\n`, { mode: 0o600 });
}

export interface SeedOptions {
  knex: Knex;
  core: BillingCore;
  dataDir: string;
  logger: Logger;
  nowMs: number;
}

/** Seeds when the gateway tables are empty; returns the demo keys (read back from the data folder otherwise). */
export async function ensureDemoData({ knex, core, dataDir, logger, nowMs }: SeedOptions): Promise<DemoKey[]> {
  if (!(await new GatewayRepository(knex).isEmpty())) return readDemoKeys(dataDir, logger);

  // Billing state first: these writes are idempotent, so a crash before the tables below are
  // filled is repaired by the next start, which still sees empty tables and seeds again.
  for (const demo of DEMO_USERS) await demo.setup(core, nowMs);

  const keys = DEMO_USERS.map((demo) => ({ userId: demo.user.id, keyId: demo.key.id, key: generateApiKey(), description: demo.description }));
  try {
    await knex.transaction(async (trx) => {
      const repo = new GatewayRepository(trx);
      for (const group of DEMO_GROUPS) await repo.insertGroup(group, nowMs);
      for (const [i, demo] of DEMO_USERS.entries()) {
        const key = keys[i] as DemoKey;
        await repo.insertUser(demo.user, nowMs);
        await repo.insertKey({ ...demo.key, label: keyLabel(key.key) }, hashApiKey(key.key), nowMs);
      }
    });
  } catch (err) {
    // Another gateway process sharing the database seeded it first: its keys are the valid ones.
    if (!(await new GatewayRepository(knex).isEmpty())) {
      logger.info('demo data was seeded by another process');
      return readDemoKeys(dataDir, logger);
    }
    throw err;
  }
  await writeDemoKeys(dataDir, keys);
  logger.info({ users: keys.map((k) => k.userId) }, 'seeded demo data');
  return keys;
}

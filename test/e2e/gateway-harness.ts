// Runs the example gateway for e2e tests: createApp on a given environment, a supertest client, captured logs,
// and helpers that create an isolated user and key per test through the admin API.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { createApp, loadConfig, type Gateway } from '../../examples/proxy/server.js';
import { createLogger } from '../../examples/proxy/logger.js';

export const ADMIN_TOKEN = 'e2e-admin-token-0123456789abcdef';

export interface TestUser {
  userId: string;
  keyId: string;
  key: string;
}

export interface UserOptions {
  groupId?: string;
  balanceUsd?: string;
  rpmLimit?: number;
  maxConcurrency?: number;
}

export interface GatewayHarness {
  gateway: Gateway;
  /** supertest on the app's request handler. */
  http(): request.Agent;
  /** Every log line the gateway wrote (JSON). */
  logs: string[];
  /** Every secret handed out (keys, the admin token), for the log check. */
  secrets: string[];
  /** A request to an admin route with the admin token. */
  admin(method: 'post' | 'put', route: string, body: object): request.Test;
  createUser(options?: UserOptions): Promise<TestUser>;
  /** Listens on a free loopback port (for tests that need a real socket); closed with the harness. */
  listen(): Promise<string>;
  close(): Promise<void>;
}

let sequence = 0;

/** Starts the gateway on the embedded defaults plus `env`; `cleanup` runs after it is closed. */
export async function startHarness(env: Record<string, string>, cleanup?: () => Promise<void>): Promise<GatewayHarness> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbe-e2e-'));
  const config = loadConfig({
    DATA_DIR: dataDir,
    ADMIN_TOKEN,
    LOG_LEVEL: 'info',
    MOCK_LATENCY_MS: '0',
    MOCK_CHUNK_DELAY_MS: '1',
    MOCK_MAX_REPLY_WORDS: '4000',
    ...env,
  });
  const logs: string[] = [];
  const logger = createLogger('info', { write: (line: string) => void logs.push(line) });
  const gateway = await createApp(config, { logger });
  const handler = gateway.app.callback();
  const agent = request.agent(handler);
  const servers: http.Server[] = [];
  const secrets = [ADMIN_TOKEN, ...gateway.demoKeys.map((k) => k.key)];
  const run = `${Date.now().toString(36).slice(-5)}${(sequence++).toString(36)}`;
  let users = 0;

  const harness: GatewayHarness = {
    gateway,
    http: () => agent,
    logs,
    secrets,
    admin: (method, route, body) => agent[method](route).set('Authorization', `Bearer ${ADMIN_TOKEN}`).send(body),
    async createUser(options = {}) {
      const userId = `u${run}x${(users++).toString(36)}`;
      await harness
        .admin('post', '/admin/users', {
          id: userId,
          groupId: options.groupId ?? 'standard',
          balanceUsd: options.balanceUsd ?? '1.00',
          rpmLimit: options.rpmLimit ?? 0,
          ...(options.maxConcurrency !== undefined && { maxConcurrency: options.maxConcurrency }),
        })
        .expect(201);
      const created = await harness.admin('post', `/admin/users/${userId}/keys`, { id: `${userId}k` }).expect(201);
      const key = created.body.key as string;
      secrets.push(key);
      return { userId, keyId: `${userId}k`, key };
    },
    async listen() {
      const server = http.createServer(handler);
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    async close() {
      for (const server of servers) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
      await gateway.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
      await cleanup?.();
    },
  };
  return harness;
}

/**
 * The environment of the live-metering scenarios (docs/stream-metering.md): a mock that answers as
 * many words as max_tokens asks (up to 40,000), a word a millisecond or so (faster than any real
 * model, slow enough that the relays leave the event loop room for their Redis replies), and
 * 256-token slices.
 */
export const METERING_ENV: Readonly<Record<string, string>> = Object.freeze({
  MOCK_MAX_REPLY_WORDS: '40000',
  MOCK_CHUNK_DELAY_MS: '1',
  STREAM_METERING: 'on',
  METERING_SLICE_TOKENS: '256',
});

/** Polls until `check` returns a value other than undefined (at most timeoutMs). */
export async function waitFor<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// Steady HTTP load against a small gateway built on the chain: each admitted request is settled after
// the response (not awaited by it), as a real gateway does, and every request's outcome is sampled.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import type { BillingCore } from '../../lib/billing-core.js';
import { formatUsd } from '../../lib/money.js';
import type { SettlementReceipt } from '../../lib/settlement.js';
import { billingEligibility } from '../../middleware/index.js';
import { randomCostUnits, subjectOf, type FaultUser, type Ledger } from './workload.js';

export interface Sample {
  /** performance.now() when the request was sent, and how long it took. */
  startedMs: number;
  latencyMs: number;
  status: number;
  /** From the response: where the balance came from, and what RPM did. */
  balanceSource: string | null;
  rpm: string | null;
}

export interface Gateway {
  port: number;
  /** Every settlement the handlers started. */
  settlements: Promise<SettlementReceipt>[];
  close(): Promise<void>;
}

export async function startGateway(core: BillingCore, users: readonly FaultUser[], ledger: Ledger, random: () => number): Promise<Gateway> {
  const settlements: Promise<SettlementReceipt>[] = [];
  // Unique per gateway: the suites share one schema, and request ids are the settlements' identity.
  const run = Math.random().toString(36).slice(2, 8);
  let nextId = 0;
  const app = new Koa();
  app.use(async (ctx, next) => {
    const user = users[Number(ctx.get('x-user-index'))];
    ctx.state.subject = user ? subjectOf(user) : undefined;
    ctx.state.user = user;
    await next();
  });
  app.use(billingEligibility({ core, subject: (ctx) => ctx.state.subject }));
  app.use((ctx) => {
    const billing = ctx.state.billing!;
    const user = ctx.state.user as FaultUser;
    const checks = billing.decision.checks;
    ctx.body = {
      balanceSource: checks.find((c) => c.check === 'balance')?.source ?? null,
      rpm: checks.find((c) => c.check === 'rpm')?.outcome ?? null,
    };
    // Settled after the "upstream call", without holding the response (the gateway's pattern).
    const requestId = `${run}-req-${nextId++}`;
    const units = randomCostUnits(random);
    ledger.record(requestId, user.id, units);
    settlements.push(billing.settle({ requestId, costUsd: formatUsd(units) }));
  });
  const server = http.createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    settlements,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function post(agent: http.Agent, port: number, userIndex: number): Promise<Omit<Sample, 'startedMs' | 'latencyMs'>> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent, headers: { 'x-user-index': String(userIndex) } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          let parsed: { balanceSource?: string; rpm?: string } = {};
          try {
            parsed = JSON.parse(body) as typeof parsed;
          } catch {
            // Error bodies have another shape; the status says enough.
          }
          resolve({ status: res.statusCode ?? 0, balanceSource: parsed.balanceSource ?? null, rpm: parsed.rpm ?? null });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/**
 * `concurrency` clients, paced so that together they send about `ratePerSec` requests, each for a
 * random user, until `stop()` says so. Each finished request is appended to `samples` as it completes,
 * so the test can watch the run.
 */
export async function runLoad(options: {
  port: number;
  userCount: number;
  concurrency: number;
  ratePerSec: number;
  random: () => number;
  stop: () => boolean;
  samples: Sample[];
}): Promise<void> {
  const { port, userCount, concurrency, ratePerSec, random, stop, samples } = options;
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const intervalMs = (1000 * concurrency) / ratePerSec;
  const client = async () => {
    while (!stop()) {
      const startedMs = performance.now();
      const outcome = await post(agent, port, Math.floor(random() * userCount));
      const latencyMs = performance.now() - startedMs;
      samples.push({ startedMs, latencyMs, ...outcome });
      const pause = intervalMs - latencyMs;
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, client));
  } finally {
    agent.destroy();
  }
}

// A real deadlock on PostgreSQL: the settlement chosen as victim is retried whole and lands exactly once; other errors are not retried.
import { expect } from 'chai';
import type { Knex } from 'knex';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { SettlementTargetMissingError } from '../../lib/store/store-errors.js';
import type { BillingLogger } from '../../lib/types.js';
import { createPgSchema, type PgSchema } from '../helpers/postgres.js';
import { requirePostgres } from '../helpers/services.js';

const TIME = { nowMs: Date.parse('2024-03-06T12:00:00Z'), timezone: 'UTC' };

function recordingLogger(): BillingLogger & { warnings: object[] } {
  const warnings: object[] = [];
  const ignore = () => {};
  return { warnings, debug: ignore, info: ignore, error: ignore, warn: (obj) => void warnings.push(obj) };
}

/** Resolves once some backend is waiting for a lock held by the session `pid`. */
async function waitUntilBlockedBy(knex: Knex, pid: number): Promise<void> {
  for (let i = 0; i < 250; i++) {
    const { rows } = await knex.raw('SELECT 1 FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))', [pid]);
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no session became blocked by backend ${pid}`);
}

describe('KnexBillingStore on PostgreSQL: transaction retries', function () {
  this.timeout(30_000);
  let pg: PgSchema | undefined;

  before(async function () {
    await requirePostgres(this);
    pg = await createPgSchema({ poolMax: 4 });
  });

  after(async () => {
    await pg?.destroy();
  });

  it('a settlement aborted as a deadlock victim (40P01) is retried and charged exactly once', async () => {
    const { knex } = pg!;
    const logger = recordingLogger();
    const store = new KnexBillingStore(knex, { logger });
    await store.topUp('dl', 10n * 100_000_000n);
    const base = { apiKeyId: 'kdl', userId: 'dl', groupId: null, mode: 'balance' as const, platform: null, trackKeyWindows: true, time: TIME };
    await store.settle({ ...base, requestId: 'first', costUnits: 100_000_000n });

    // Another writer takes the rows in the opposite order: key windows first, then the account.
    // Its own deadlock check is slowed down, so that the settlement's backend detects the cycle
    // (after the server's deadlock_timeout) and is the one aborted.
    const other = await knex.transaction();
    try {
      await other.raw("SET LOCAL deadlock_timeout = '20s'");
      const { rows } = await other.raw('SELECT pg_backend_pid() AS pid');
      await other('billing_api_key_windows')
        .where({ user_id: 'dl', api_key_id: 'kdl' })
        .update({ version: other.raw('version + 1') });
      const settling = store.settle({ ...base, requestId: 'victim', costUnits: 200_000_000n });
      await waitUntilBlockedBy(knex, rows[0].pid);
      await other('billing_accounts')
        .where({ user_id: 'dl' })
        .update({ balance: other.raw('balance + 0.00000001'), version: other.raw('version + 1') });
      await other.commit();
      const result = await settling;
      expect(result.duplicate).to.equal(false);
      // 10 − 1 − 2 + 0.00000001 (the other writer's smallest unit) — both writes landed, each once.
      expect(result.balance).to.deep.equal({ version: 4, balance: 700_000_001n });
      expect(result.apiKeyWindows).to.deep.include({ version: 3, usage5h: 300_000_000n });
    } finally {
      if (!other.isCompleted()) await other.rollback();
    }
    expect(logger.warnings).to.have.length(1);
    expect(logger.warnings[0]).to.deep.include({ operation: 'settle', attempt: 1, code: '40P01' });
    expect(await knex('billing_usage_log').where({ user_id: 'dl' }).pluck('request_id')).to.have.members(['first', 'victim']);
  });

  it('does not retry errors that a retry cannot fix', async () => {
    const logger = recordingLogger();
    const store = new KnexBillingStore(pg!.knex, { logger });
    const err = await store
      .settle({
        requestId: 'lost',
        apiKeyId: '',
        userId: 'nobody',
        groupId: null,
        mode: 'balance',
        costUnits: 1n,
        platform: null,
        trackKeyWindows: false,
        time: TIME,
      })
      .catch((e: unknown) => e);
    expect(err).to.be.instanceOf(SettlementTargetMissingError);
    expect(logger.warnings).to.deep.equal([]);
  });
});

// A gateway process killed with SIGKILL while holding 500 reservations: while it lives, its renewals keep
// them counting past their TTL; once it is dead, another process admits against the full balance again
// within one TTL, because nobody renews them.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createBillingCore, type BillingCore } from '../../lib/billing-core.js';
import { RedisBillingCache } from '../../lib/cache/redis-cache.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import { createPgSchema, type PgSchema } from '../helpers/postgres.js';
import { REDIS_URL, requirePostgres, requireRedis, uniqueSuffix } from '../helpers/services.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TTL_MS = 1500;
const HOLDS = 500;

describe('a process killed holding reservations', function () {
  this.timeout(60_000);
  let pg: PgSchema;
  let redis: Redis;
  let core: BillingCore;
  let child: ChildProcess | undefined;
  const prefix = `kbe-test:${uniqueSuffix()}:`;

  before(async function () {
    await requirePostgres(this);
    await requireRedis(this);
    pg = await createPgSchema();
    redis = new Redis(REDIS_URL);
    core = createBillingCore({ store: new KnexBillingStore(pg.knex), cache: new RedisBillingCache(redis, { prefix }), reservationTtlMs: TTL_MS });
  });

  after(async () => {
    child?.kill('SIGKILL');
    await core?.close();
    if (redis) {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
    await pg?.destroy();
  });

  it('its 500 holds count while it renews them, and stop counting within one TTL of SIGKILL', async () => {
    const userId = `killed-${uniqueSuffix()}`;
    await core.admin.setBalance(userId, '1');
    const subject = { user: { id: userId } };
    // Node itself with tsx's loader, not the tsx launcher: SIGKILL must reach the process that holds.
    child = spawn(process.execPath, ['--import', 'tsx', 'test/faults/hold-holder.ts'], {
      cwd: ROOT,
      env: { ...process.env, PG_SCHEMA: pg.schema, REDIS_PREFIX: prefix, TTL_MS: String(TTL_MS), USER_ID: userId, HOLDS: String(HOLDS), ESTIMATE_USD: '0.002' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child!.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child!.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
    });
    expect(line).to.equal(`holding ${HOLDS}`);
    expect((await core.listReservations(userId)).length).to.equal(HOLDS);

    // Three TTLs later the holds still count: the live process renews them.
    await new Promise((resolve) => setTimeout(resolve, 3 * TTL_MS));
    const whileAlive = await core.check(subject, { estimateUsd: '0.01' });
    expect(whileAlive.allowed).to.equal(false);
    expect((await core.listReservations(userId)).length).to.equal(HOLDS);

    child.kill('SIGKILL');
    const killedAt = Date.now();
    let admittedAfterMs: number | undefined;
    while (Date.now() - killedAt < 3 * TTL_MS) {
      const full = await core.check(subject, { estimateUsd: '1' });
      if (full.allowed) {
        admittedAfterMs = Date.now() - killedAt;
        full.reservation?.release();
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    console.log(`      the full balance was admitted again ${admittedAfterMs} ms after SIGKILL (TTL ${TTL_MS} ms)`);
    expect(admittedAfterMs, 'admitted again').to.be.a('number');
    expect(admittedAfterMs!).to.be.at.most(TTL_MS + 100);
  });
});

// Holds live as long as their request: a streamed response lasting five TTLs keeps its reservation and
// its concurrency slot the whole time (renewed by the core's timer), and they are free the moment it ends.
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { createBillingCore, type BillingCore } from '../../lib/billing-core.js';
import { systemClock } from '../../lib/clock.js';
import { KnexBillingStore } from '../../lib/store/knex-store.js';
import type { BillingSubject } from '../../lib/types.js';
import { billingEligibility } from '../../middleware/index.js';
import { useBackends } from '../helpers/chain-harness.js';
import { uniqueSuffix } from '../helpers/services.js';

const TTL_MS = 1000;
const STREAM_MS = 5 * TTL_MS;

for (const backend of ['memory+sqlite', 'redis+postgres'] as const) {
  describe(`hold renewal [${backend}]`, function () {
    const backends = useBackends(backend);
    let core: BillingCore;

    beforeEach(() => {
      // The real clock: renewal is a timer, and the hold's expiry is on the cache's clock.
      core = createBillingCore({ store: new KnexBillingStore(backends().knex), cache: backends().makeCache(systemClock).cache, reservationTtlMs: TTL_MS });
    });

    afterEach(async () => {
      await core.close();
    });

    it('a stream lasting five TTLs keeps its hold and its slot the whole time, and frees both when it ends', async function () {
      this.timeout(30_000);
      const userId = `stream-${uniqueSuffix()}`;
      await core.admin.setBalance(userId, '1');
      const subject: BillingSubject = { user: { id: userId, maxConcurrency: 1 } };
      const probes: { atMs: number; allowed: boolean; code?: string }[] = [];
      const app = new Koa();
      app.use(billingEligibility({ core, subject: () => subject, estimateCost: () => '1' }));
      app.use(async (ctx) => {
        ctx.status = 200;
        ctx.respond = false;
        ctx.res.writeHead(200, { 'content-type': 'text/event-stream' });
        const startedAt = Date.now();
        while (Date.now() - startedAt < STREAM_MS) {
          await new Promise((resolve) => setTimeout(resolve, TTL_MS / 4));
          ctx.res.write('data: {}\n\n');
          // Another request of the same user, while this one streams: the hold still takes the whole balance.
          const probe = await core.check({ user: { id: userId } }, { estimateUsd: '0.01' });
          probes.push({ atMs: Date.now() - startedAt, allowed: probe.allowed, code: probe.allowed ? undefined : probe.error.code });
          if (probe.allowed) probe.reservation?.release();
        }
        ctx.res.end('data: [DONE]\n\n');
      });
      const server = http.createServer(app.callback());
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = server.address() as AddressInfo;
        const slotRefusal = new Promise<number>((resolve) =>
          setTimeout(() => {
            // Half-way through, a second request of the user finds the slot taken.
            http.get({ port, host: '127.0.0.1', path: '/' }, (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            });
          }, STREAM_MS / 2),
        );
        const body = await new Promise<string>((resolve, reject) => {
          http
            .get({ port, host: '127.0.0.1', path: '/' }, (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (chunk: string) => (text += chunk));
              res.on('end', () => resolve(text));
            })
            .on('error', reject);
        });
        expect(body).to.match(/\[DONE\]/);
        expect(await slotRefusal).to.equal(429);
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      expect(probes.length).to.be.at.least(15);
      expect(
        probes.filter((p) => p.allowed),
        JSON.stringify(probes),
      ).to.deep.equal([]);
      expect(probes.every((p) => p.code === 'INSUFFICIENT_BALANCE')).to.equal(true);
      // Released with the response: the whole balance is free again at once.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await core.listReservations(userId)).to.deep.equal([]);
      const after = await core.check(subject, { estimateUsd: '1' });
      expect(after.allowed).to.equal(true);
      if (after.allowed) after.reservation?.release();
    });
  });
}

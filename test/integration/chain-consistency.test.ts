// docs/behaviour.md#cache-consistency: under concurrent requests, settlements and random invalidations, every cached value
// converges to the store exactly once the core is closed.
import { expect } from 'chai';
import request from 'supertest';
import type { BillingSubject } from '../../lib/types.js';
import { describeChain } from '../helpers/chain-harness.js';

const USERS = 10;
const REQUESTS = 1000;

describeChain('cache consistency under load', (env) => {
  it(`${REQUESTS} concurrent requests with settlements for ${USERS} users and random invalidations leave cache = store`, async function () {
    this.timeout(120_000);
    const { core, cache, realStore } = env();
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const subjects: BillingSubject[] = [];
    for (let i = 0; i < USERS; i++) {
      const userId = env().userId(`c${i}`);
      await core.admin.setBalance(userId, '1000');
      await core.admin.setPlatformQuota(userId, 'openai', { dailyLimitUsd: '100000' });
      subjects.push({ user: { id: userId }, apiKey: { id: `k${i}`, rateLimit5h: '100000' }, platform: 'openai' });
    }
    const app = env().app({});
    const server = app.listen(0);
    const agent = request(server);
    const expectedSpend = new Map<string, bigint>();
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        const n = next++;
        const subject = subjects[Math.floor(random() * USERS)]!;
        const userId = String(subject.user.id);
        const costUnits = BigInt(1 + Math.floor(random() * 1_000_000));
        const res = await agent.post('/').set('x-subject', JSON.stringify(subject));
        expect(res.status).to.equal(200);
        const cost = `0.${costUnits.toString().padStart(8, '0')}`;
        await core.settle({ requestId: `load-${n}`, subject, costUsd: cost });
        expectedSpend.set(userId, (expectedSpend.get(userId) ?? 0n) + costUnits);
        const dice = random();
        if (dice < 0.05) await core.invalidateBalance(userId);
        else if (dice < 0.08) await core.invalidatePlatformQuota(userId, 'openai');
        else if (dice < 0.1) await core.invalidateApiKeyWindows(userId, String(subject.apiKey!.id));
      }
    };
    await Promise.all(Array.from({ length: 50 }, worker));
    server.close();
    await core.close();

    let compared = 0;
    for (const subject of subjects) {
      const userId = String(subject.user.id);
      const apiKeyId = String(subject.apiKey!.id);
      const stored = await realStore.getBalance(userId);
      expect(stored!.balance).to.equal(100_000_000_000n - (expectedSpend.get(userId) ?? 0n), 'store balance is exact');
      const cached = await cache.target.readBatch({ userId, balance: true, apiKeyId, platform: 'openai' });
      if (cached.balance?.hit) {
        expect(cached.balance.value).to.deep.equal(stored);
        compared++;
      }
      if (cached.apiKeyWindows?.hit) {
        expect(cached.apiKeyWindows.value).to.deep.equal(await realStore.getApiKeyWindows(userId, apiKeyId));
        compared++;
      }
      if (cached.platformQuota?.hit) {
        expect(cached.platformQuota.value).to.deep.equal(await realStore.getPlatformQuota(userId, 'openai'));
        compared++;
      }
    }
    console.log(`      [${env().backend}] ${REQUESTS} requests + settlements; ${compared} cached entries compared equal to the store`);
    expect(compared).to.be.greaterThan(USERS, 'most entries are cached after the run');
  });
});

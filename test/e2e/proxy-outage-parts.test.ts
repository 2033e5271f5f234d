// The example gateway's outage parts in isolation: the throttled error log, the cached key lookup's
// entry format, and which errors mean "the database is unavailable".
import { expect } from 'chai';
import { ManualClock, ThrottledLog } from '../../lib/index.js';
import { createLogger } from '../../examples/proxy/logger.js';
import { MemoryPrincipalCache, PRINCIPAL_TTL_MS, parsePrincipal } from '../../examples/proxy/principal-cache.js';
import { isServiceUnavailable } from '../../examples/proxy/store-errors.js';
import type { Principal } from '../../examples/proxy/gateway-repo.js';

const principal: Principal = {
  key: { id: 'k1', userId: 'u1', label: 'sk-Ab…', name: 'k1', enabled: true, rateLimit5hUsd: '5', rateLimit1dUsd: null, rateLimit7dUsd: null },
  user: { id: 'u1', name: 'U', groupId: 'g', rpmLimit: 0, maxConcurrency: 0 },
  group: { id: 'g', name: 'G', billingType: 'standard', rateMultiplier: '1', dailyLimitUsd: null, weeklyLimitUsd: null, monthlyLimitUsd: null, rpmLimit: 0 },
};

describe('example proxy: outage parts', () => {
  it('a throttled log writes the first error at once, then one line per interval with the count since the last', () => {
    const lines: { count: number; reason: string; level: number }[] = [];
    const clock = new ManualClock(0);
    const log = new ThrottledLog(createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) }), clock, 5000);
    for (let i = 0; i < 1000; i++) log.error('db', {}, 'down');
    log.error('other', {}, 'down');
    expect(lines.map((l) => [l.reason, l.count])).to.deep.equal([
      ['db', 1],
      ['other', 1],
    ]);
    expect(lines.map((l) => l.level)).to.deep.equal([50, 50], 'at error level');
    clock.advance(5000);
    log.error('db', {}, 'down');
    expect(lines.at(-1)).to.include({ reason: 'db', count: 1000 });
    // flush() reports what is still suppressed at its own level.
    log.error('db', {}, 'down');
    log.error('db', {}, 'down');
    log.flush();
    expect(lines.at(-1)).to.include({ reason: 'db', count: 2, level: 50 });
  });

  it('a cached principal reads back as itself; anything else is a miss', () => {
    expect(parsePrincipal(JSON.stringify(principal))).to.deep.equal(principal);
    expect(parsePrincipal(JSON.stringify({ ...principal, group: null }))).to.deep.equal({ ...principal, group: null });
    for (const bad of [
      null,
      'not json',
      'null',
      '[]',
      JSON.stringify({ ...principal, key: { ...principal.key, userId: 'other' } }),
      JSON.stringify({ ...principal, key: { ...principal.key, enabled: 'yes' } }),
      JSON.stringify({ ...principal, user: { ...principal.user, rpmLimit: 1.5 } }),
    ]) {
      expect(parsePrincipal(bad), String(bad)).to.equal(undefined);
    }
  });

  it("the memory cache expires entries after the TTL and drops a user's entries", async () => {
    let now = 0;
    const cache = new MemoryPrincipalCache(() => now);
    await cache.set('h1', principal);
    await cache.set('h2', principal);
    expect(await cache.get('h1')).to.equal(principal);
    await cache.dropUser('u1');
    expect(await cache.get('h1')).to.equal(undefined);
    expect(await cache.get('h2')).to.equal(undefined);
    await cache.set('h1', principal);
    now = PRINCIPAL_TTL_MS;
    expect(await cache.get('h1')).to.equal(undefined);
  });

  it('names unavailable-database errors, and only those', () => {
    const coded = (code: string) => Object.assign(new Error('x'), { code });
    for (const err of [
      coded('ECONNREFUSED'),
      coded('57P01'),
      coded('08006'),
      Object.assign(new Error('Knex: Timeout acquiring a connection'), { name: 'KnexTimeoutError' }),
      new Error('Connection terminated unexpectedly'),
      new Error('wrapped', { cause: coded('ETIMEDOUT') }),
    ]) {
      expect(isServiceUnavailable(err), err.message).to.equal(true);
    }
    const cyclic: Error & { cause?: unknown } = new Error('loop');
    cyclic.cause = cyclic;
    for (const err of [new Error('syntax error at or near'), coded('23505'), new TypeError('x is undefined'), null, 'ECONNREFUSED', cyclic]) {
      expect(isServiceUnavailable(err), String(err)).to.equal(false);
    }
  });
});

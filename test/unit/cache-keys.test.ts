// Unit tests for lib/cache/keys.ts: the key names of every kind, one hash tag per user, and the kept names.
import { expect } from 'chai';
import { CacheKeys } from '../../lib/cache/keys.js';

describe('CacheKeys', () => {
  const keys = new CacheKeys('kbe:');

  it("names every key of a user under the user's hash tag", () => {
    expect(keys.entity({ kind: 'balance', userId: '7' })).to.equal('kbe:{u:7}:bal');
    expect(keys.entity({ kind: 'subscription', userId: '7', groupId: 'g1' })).to.equal('kbe:{u:7}:sub:g1');
    expect(keys.entity({ kind: 'apiKeyWindows', userId: '7', apiKeyId: 'k1' })).to.equal('kbe:{u:7}:key:k1');
    expect(keys.entity({ kind: 'platformQuota', userId: '7', platform: 'openai' })).to.equal('kbe:{u:7}:pq:openai');
    expect(keys.entity({ kind: 'rpmOverride', userId: '7', groupId: 'g1' })).to.equal('kbe:{u:7}:rpmo:g1');
    expect(keys.rpmUser('7')).to.equal('kbe:{u:7}:rpm:u');
    expect(keys.rpmGroup('7', 'g1')).to.equal('kbe:{u:7}:rpm:g:g1');
    expect(keys.leases('7')).to.equal('kbe:{u:7}:leases');
    expect(keys.changeStamp('7')).to.equal('kbe:{u:7}:chg');
  });

  it('keeps one name per kind and id: the same id under two kinds, or two users, never share a name', () => {
    const sub = keys.entity({ kind: 'subscription', userId: 'u1', groupId: 'g' });
    const override = keys.entity({ kind: 'rpmOverride', userId: 'u1', groupId: 'g' });
    const counter = keys.rpmGroup('u1', 'g');
    expect(new Set([sub, override, counter]).size).to.equal(3);
    expect(keys.entity({ kind: 'subscription', userId: 'u2', groupId: 'g' })).to.equal('kbe:{u:u2}:sub:g');
    expect(keys.entity({ kind: 'subscription', userId: 'u1', groupId: 'g' })).to.equal(sub);
  });

  it('names keys correctly after the kept names start over (more users than it keeps)', () => {
    const many = new CacheKeys('p:');
    const first = many.entity({ kind: 'apiKeyWindows', userId: 'first', apiKeyId: 'k' });
    for (let i = 0; i < 25_000; i++) expect(many.rpmUser(`u${i}`)).to.equal(`p:{u:u${i}}:rpm:u`);
    expect(many.entity({ kind: 'apiKeyWindows', userId: 'first', apiKeyId: 'k' })).to.equal(first);
    expect(many.rpmGroup('u24999', 'g')).to.equal('p:{u:u24999}:rpm:g:g');
  });
});

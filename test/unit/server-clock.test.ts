// The parts of the reserve deadline that are pure logic: the Cluster key slot and the clock bounds.
import { expect } from 'chai';
import { keySlot } from '../../lib/cache/key-slot.js';
import { CLOCK_SAMPLE_MAX_AGE_MS, ServerClockBounds } from '../../lib/cache/server-clock.js';

describe('reserve deadline parts', () => {
  it('computes Redis Cluster slots as the specification does, hash tags included', () => {
    // CRC16-XMODEM("123456789") = 0x31C3 (the specification's check value).
    expect(keySlot('123456789')).to.equal(0x31c3 % 16384);
    expect(keySlot('foo')).to.equal(12182);
    expect(keySlot('{user1000}.following')).to.equal(keySlot('{user1000}.followers'));
    expect(keySlot('{user1000}.following')).to.equal(keySlot('user1000'));
    // An empty tag is no tag: the whole key is hashed.
    expect(keySlot('{}x')).to.equal(keySlot('{}x'));
    expect(keySlot('{}x')).to.not.equal(keySlot('x'));
  });

  it('keeps the tightest recent lower bound of each server clock, and forgets stale ones', () => {
    const clocks = new ServerClockBounds();
    expect(clocks.serverTimeAtMost('a', 1000)).to.equal(undefined);
    clocks.sample('a', 5000, 1000); // offset 4000
    clocks.sample('a', 4990, 1002); // offset 3988: looser, ignored
    expect(clocks.serverTimeAtMost('a', 1100)).to.equal(5100);
    clocks.sample('a', 5200, 1100); // offset 4100: tighter
    expect(clocks.serverTimeAtMost('a', 1200)).to.equal(5300);
    expect(clocks.serverTimeAtMost('b', 1200), 'another server, another clock').to.equal(undefined);
    expect(clocks.serverTimeAtMost('a', 1100 + CLOCK_SAMPLE_MAX_AGE_MS)).to.equal(undefined);
    // Past half its age, a bound gives way to any new sample (a clock stepped back is followed).
    const later = 1100 + CLOCK_SAMPLE_MAX_AGE_MS / 2;
    clocks.sample('a', later + 3000, later);
    expect(clocks.serverTimeAtMost('a', later)).to.equal(later + 3000);
    expect(clocks.serverTimeAtMost('a', later + CLOCK_SAMPLE_MAX_AGE_MS - 1), 'renewed: not expired').to.equal(later + CLOCK_SAMPLE_MAX_AGE_MS - 1 + 3000);
  });
});

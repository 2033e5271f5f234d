// Unit tests for lib/next-turn.ts: released after the turn's microtasks, one immediate per turn, bounded.
import { expect } from 'chai';
import { MAX_TURN_WAITERS, nextTurn } from '../../lib/next-turn.js';

async function microtasks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await null;
}

describe('nextTurn', () => {
  it('resolves only once the turn is over, however many microtasks run first', async () => {
    let released = false;
    const waiting = nextTurn().then(() => (released = true));
    await microtasks(1_000);
    expect(released).to.equal(false);
    await waiting;
    expect(released).to.equal(true);
  });

  it('releases every waiter of a turn together, in order', async () => {
    const order: number[] = [];
    await Promise.all([1, 2, 3].map((i) => nextTurn().then(() => order.push(i))));
    expect(order).to.deep.equal([1, 2, 3]);
  });

  it('lets everyone go at once when more than MAX_TURN_WAITERS wait in a turn that does not end', async () => {
    let released = 0;
    for (let i = 0; i < MAX_TURN_WAITERS; i++) void nextTurn().then(() => released++);
    await microtasks(10);
    expect(released, 'still within the bound: all wait').to.equal(0);
    const last = nextTurn();
    await microtasks(10);
    expect(released, 'the bound was reached: the earlier waiters are released without a turn').to.equal(MAX_TURN_WAITERS);
    await last;
  });
});

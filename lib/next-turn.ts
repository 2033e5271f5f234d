// "Once this turn of the event loop is over", shared by every caller of a turn and bounded.

/** Waiters past which all are let go at once: a caller that never lets the loop turn (a tight in-process loop) cannot pile them up. */
export const MAX_TURN_WAITERS = 1024;

let waiting: (() => void)[] = [];

function releaseAll(): void {
  const released = waiting;
  waiting = [];
  for (const resolve of released) resolve();
}

/**
 * Resolves after the current turn of the event loop: after the microtasks of every network read
 * handled in it. A cache write that has just landed (a fill, an invalidation) can still be followed
 * by requests whose cache read was answered before it — their replies arrived in the same or an
 * earlier read, and their checks run in the microtasks that follow — so work that guards against
 * duplicates (a load's single-flight key, a background task's key) waits for this before giving its
 * key up. One setImmediate serves every waiter of a turn. More than MAX_TURN_WAITERS waiting at
 * once (a loop that never turns) releases them all at once: a duplicate store read is possible
 * then, unbounded memory is not.
 */
export function nextTurn(): Promise<void> {
  if (waiting.length >= MAX_TURN_WAITERS) releaseAll();
  return new Promise((resolve) => {
    if (waiting.push(resolve) === 1) setImmediate(releaseAll);
  });
}

// Holds a Redis client's socket writes until the end of the event-loop turn, so the commands that
// every request handled in that turn sends leave together: one writev(2) instead of one write(2)
// per command, and Redis reads them with one read(2) too (docs/benchmark.md). Under load a gateway's turn
// handles several requests, and these system calls were about half of what a warm request cost
// Redis and a quarter of what it cost the process. Unlike ioredis's enableAutoPipelining, no
// Pipeline object is built per batch: the commands are written as usual, Node's own cork buffers
// them, and replies arrive as usual.
import type { Cluster, Redis } from 'ioredis';

/** The part of a Node stream used here (net.Socket and tls.TLSSocket both have it). */
interface Corkable {
  cork(): void;
  uncork(): void;
}

/** The write stream of one connection that can take a command now, or null (connecting, reconnecting, closed). */
function readyStream(connection: Redis): Corkable | null {
  const stream = (connection as { stream?: Partial<Corkable> }).stream;
  if (connection.status !== 'ready' || typeof stream?.cork !== 'function' || typeof stream.uncork !== 'function') return null;
  return stream as Corkable;
}

export class TurnWrites {
  readonly #client: Redis | Cluster;
  /** Streams corked this turn, or null when none is. */
  #held: Corkable[] | null = null;
  readonly #release = (): void => {
    const held = this.#held;
    this.#held = null;
    if (held !== null) for (const stream of held) stream.uncork();
  };

  constructor(client: Redis | Cluster) {
    this.#client = client;
  }

  /**
   * Holds this turn's writes on the client's connections (on a Cluster: every master's, since
   * ioredis picks the node by the keys, and the cache's commands all go to masters), released in
   * the check phase of this turn (setImmediate).
   * Called just before a command is sent; a connection not ready is left alone, so ioredis's
   * offline queue and reconnection behave as without it.
   */
  hold(): void {
    if (this.#held !== null) return;
    const held: Corkable[] = [];
    const connections = this.#client.isCluster ? (this.#client as Cluster).nodes('master') : [this.#client as Redis];
    for (const connection of connections) {
      const stream = readyStream(connection);
      if (stream === null) continue;
      stream.cork();
      held.push(stream);
    }
    if (held.length === 0) return;
    this.#held = held;
    // The check phase follows this turn's I/O callbacks; a pending immediate also keeps the next
    // poll from blocking, so a command sent from an immediate waits one non-blocking turn at most.
    setImmediate(this.#release);
  }
}

// What Redis's clock reads while ours reads t, known from below: each reply that carries the
// server's time gives a lower bound of the offset (the server read its clock before we received the
// reply). A reserve sends "refuse after <our give-up moment> + that bound", a deadline the server
// can check on its own clock (docs/faults.md, "Redis frozen"). One bound per clock domain: the single
// server, or each Cluster master, whose clocks may differ.

/** A bound older than this is renewed: clocks drift, and a server may be replaced by a failover. */
export const CLOCK_SAMPLE_MAX_AGE_MS = 10_000;

/** Our clock for everything here: monotonic, in epoch milliseconds. */
export function localNowMs(): number {
  return performance.timeOrigin + performance.now();
}

export class ServerClockBounds {
  readonly #bounds = new Map<string, { offsetMs: number; sampledAtMs: number }>();

  /** A reply of `domain` received at `receivedAtMs` (our clock) said its clock read `serverMs`. */
  sample(domain: string, serverMs: number, receivedAtMs: number): void {
    if (!Number.isFinite(serverMs)) return;
    const offsetMs = serverMs - receivedAtMs;
    const current = this.#bounds.get(domain);
    // The largest recent lower bound is the tightest. One past half its age gives way to the new
    // sample whatever it says: a server clock stepped back is followed within that time, and under
    // steady traffic the bound never expires (so no reserve waits for a TIME round trip).
    if (current && offsetMs <= current.offsetMs && receivedAtMs - current.sampledAtMs < CLOCK_SAMPLE_MAX_AGE_MS / 2) return;
    this.#bounds.set(domain, { offsetMs, sampledAtMs: receivedAtMs });
  }

  /** The server's clock at our `localMs`, from below; undefined without a recent sample. */
  serverTimeAtMost(domain: string, localMs: number): number | undefined {
    const bound = this.#bounds.get(domain);
    if (!bound || localMs - bound.sampledAtMs >= CLOCK_SAMPLE_MAX_AGE_MS) return undefined;
    return Math.floor(localMs + bound.offsetMs);
  }
}

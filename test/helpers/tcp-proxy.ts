// A TCP fault proxy owned by a test: sits between the package and Redis or PostgreSQL and can cut,
// black-hole or slow the connection, then restore it — the shared services themselves are never touched.
import net from 'node:net';

export type ProxyMode = 'pass' | 'cut' | 'blackhole' | 'latency';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** Data arriving while black-holed is read and dropped, so the stream is unusable afterwards. */
  blackholed: boolean;
  /** Chunks towards the client waiting out their latency, in order, each with the time it is due. */
  delayed: { dueMs: number; chunk: Buffer }[];
  timer: NodeJS.Timeout | undefined;
}

export interface ProxyTarget {
  host: string;
  port: number;
}

export class TcpFaultProxy {
  readonly #target: ProxyTarget;
  readonly #pairs = new Set<Pair>();
  #server: net.Server;
  #port = 0;
  #mode: ProxyMode = 'pass';
  #latencyMs = 0;
  #accepted = 0;
  #closed = false;

  private constructor(target: ProxyTarget) {
    this.#target = target;
    this.#server = this.#createServer();
  }

  /** Starts a proxy on a free loopback port forwarding to `target` (host:port, or a redis:// / postgres:// URL). */
  static async start(target: ProxyTarget | string): Promise<TcpFaultProxy> {
    const proxy = new TcpFaultProxy(typeof target === 'string' ? targetOf(target) : target);
    await proxy.#listen(0);
    return proxy;
  }

  get host(): string {
    return '127.0.0.1';
  }

  get port(): number {
    return this.#port;
  }

  get mode(): ProxyMode {
    return this.#mode;
  }

  /** Connections accepted since start (a reconnecting client shows up here). */
  get accepted(): number {
    return this.#accepted;
  }

  /** Client connections currently open through the proxy. */
  get open(): number {
    return this.#pairs.size;
  }

  /** `url` with its host and port replaced by the proxy's, e.g. the DATABASE_URL to hand the package. */
  urlFor(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = this.host;
    parsed.port = String(this.#port);
    return parsed.toString();
  }

  /** Destroys every connection and refuses new ones (the port stops listening: ECONNREFUSED). */
  async cut(): Promise<void> {
    this.#mode = 'cut';
    for (const pair of [...this.#pairs]) this.#destroy(pair);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Accepts connections and reads them, but never forwards or answers anything, new or existing. */
  async blackhole(): Promise<void> {
    await this.#reopen();
    this.#mode = 'blackhole';
    for (const pair of this.#pairs) pair.blackholed = true;
  }

  /** Delays every chunk the service sends by `ms`, so each round trip takes `ms` longer. */
  async latency(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`latency must be a non-negative number of ms, got ${ms}`);
    await this.#reopen();
    this.#mode = 'latency';
    this.#latencyMs = ms;
  }

  /** Back to plain forwarding. Black-holed connections lost data, so they are destroyed (clients reconnect). */
  async restore(): Promise<void> {
    await this.#reopen();
    this.#mode = 'pass';
    this.#latencyMs = 0;
    for (const pair of [...this.#pairs]) if (pair.blackholed) this.#destroy(pair);
  }

  /** Destroys every connection and stops listening for good. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const pair of [...this.#pairs]) this.#destroy(pair);
    if (this.#server.listening) await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #createServer(): net.Server {
    return net.createServer({ noDelay: true }, (client) => this.#accept(client));
  }

  /** After a cut, listens again on the same port so clients configured with it find the service back. */
  async #reopen(): Promise<void> {
    if (this.#closed) throw new Error('the proxy is closed');
    if (this.#server.listening) return;
    this.#server = this.#createServer();
    // The port was ours a moment ago; another process taking it in between is unlikely but possible.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#listen(this.#port);
        return;
      } catch (err) {
        if (attempt >= 20 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  #listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, this.host, () => {
        this.#server.off('error', reject);
        this.#port = (this.#server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  #accept(client: net.Socket): void {
    this.#accepted++;
    if (this.#mode === 'cut') {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: this.#target.host, port: this.#target.port, noDelay: true });
    const pair: Pair = { client, upstream, blackholed: this.#mode === 'blackhole', delayed: [], timer: undefined };
    this.#pairs.add(pair);
    const end = () => this.#destroy(pair);
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);

    client.on('data', (chunk: Buffer) => {
      if (pair.blackholed) return;
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (pair.blackholed) return;
      this.#toClient(pair, chunk);
    });
  }

  #toClient(pair: Pair, chunk: Buffer): void {
    if (this.#mode !== 'latency' && pair.delayed.length === 0) {
      pair.client.write(chunk);
      return;
    }
    // Never earlier than a chunk already waiting, so the byte stream stays in order when latency changes.
    const last = pair.delayed.at(-1)?.dueMs ?? 0;
    pair.delayed.push({ dueMs: Math.max(Date.now() + (this.#mode === 'latency' ? this.#latencyMs : 0), last), chunk });
    this.#armTimer(pair);
  }

  /** One timer per connection, for the oldest waiting chunk. */
  #armTimer(pair: Pair): void {
    const head = pair.delayed[0];
    if (pair.timer || !head) return;
    pair.timer = setTimeout(
      () => {
        pair.timer = undefined;
        const now = Date.now();
        while (pair.delayed[0] && pair.delayed[0].dueMs <= now) {
          const { chunk } = pair.delayed.shift()!;
          if (!pair.blackholed && !pair.client.destroyed) pair.client.write(chunk);
        }
        this.#armTimer(pair);
      },
      Math.max(0, head.dueMs - Date.now()),
    );
    pair.timer.unref();
  }

  #destroy(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return;
    clearTimeout(pair.timer);
    pair.delayed.length = 0;
    pair.client.destroy();
    pair.upstream.destroy();
  }
}

function targetOf(url: string): ProxyTarget {
  const parsed = new URL(url);
  const defaultPort = parsed.protocol.startsWith('redis') ? 6379 : parsed.protocol.startsWith('postgres') ? 5432 : NaN;
  const port = Number(parsed.port || defaultPort);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`cannot tell the port of ${url}`);
  return { host: parsed.hostname || '127.0.0.1', port };
}

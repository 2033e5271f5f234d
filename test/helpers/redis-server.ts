// Starts a throwaway standalone redis-server on a free loopback port (no persistence) that a test may
// freeze (SIGSTOP), thaw (SIGCONT) or kill — faults the shared Redis must never be put through.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';

export interface RedisServerHandle {
  url: string;
  port: number;
  /** SIGSTOP: the process stops reading and answering; its sockets stay open, the kernel buffers what clients send. */
  freeze(): void;
  /** SIGCONT: it runs what was buffered, then answers again. */
  thaw(): void;
  /** SIGKILL: connections are refused until start() is called again. */
  kill(): Promise<void>;
  /** (Re)starts the server on the same port, empty. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function untilAnswering(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start: ${(err as Error).message}`);
    } finally {
      client.disconnect();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function startRedisServer(): Promise<RedisServerHandle> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const exited = (proc: ChildProcess) => proc.exitCode !== null || proc.signalCode !== null;
  const handle: RedisServerHandle = {
    url: `redis://127.0.0.1:${port}`,
    port,
    freeze: () => void child?.kill('SIGSTOP'),
    thaw: () => void child?.kill('SIGCONT'),
    async kill() {
      const proc = child;
      child = null;
      if (!proc || exited(proc)) return;
      const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill('SIGCONT');
      proc.kill('SIGKILL');
      await gone;
    },
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
        stdio: 'ignore',
      });
      await untilAnswering(port);
    },
    stop: () => handle.kill(),
  };
  await handle.start();
  return handle;
}

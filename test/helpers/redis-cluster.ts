// Starts a throwaway three-master Redis Cluster on free loopback ports (redis-server --cluster-enabled,
// then redis-cli --cluster create), waits until every slot is served, and tears it down afterwards.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import type { RedisNodeAddress } from './redis.js';

const run = promisify(execFile);
const HOST = '127.0.0.1';
const CLUSTER_BUS_OFFSET = 10_000; // Redis Cluster talks to its peers on port + 10000.
const STARTUP_TIMEOUT_MS = 15_000;

export interface RedisClusterHandle {
  nodes: RedisNodeAddress[];
  /** A Cluster client for these nodes, ready to use; closed by stop(). */
  connect(): Promise<Cluster>;
  stop(): Promise<void>;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: HOST, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** `count` ports whose cluster-bus twins are free too, picked at random to avoid other runs. */
async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count && attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 25_000);
    if (ports.includes(port) || ports.includes(port + CLUSTER_BUS_OFFSET) || ports.includes(port - CLUSTER_BUS_OFFSET)) continue;
    if ((await portIsFree(port)) && (await portIsFree(port + CLUSTER_BUS_OFFSET))) ports.push(port);
  }
  if (ports.length < count) throw new Error('no free loopback ports for a Redis Cluster');
  return ports;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it resolves true or the deadline passes. */
async function waitUntil(what: string, deadline: number, probe: () => Promise<boolean>): Promise<void> {
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = err;
    }
    await delay(100);
  }
  throw new Error(`timed out waiting for ${what}${lastError instanceof Error ? ` (last error: ${lastError.message})` : ''}`);
}

async function withNode<T>(port: number, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {}); // a refused connection while the server starts surfaces through connect()
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

function startServer(dir: string, port: number): ChildProcess {
  return spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--protected-mode',
      'no',
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      `nodes-${port}.conf`,
      '--cluster-node-timeout',
      '3000',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--logfile',
      `redis-${port}.log`,
    ],
    { cwd: dir, stdio: 'ignore' },
  );
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

async function logTails(dir: string, ports: number[]): Promise<string> {
  const tails = await Promise.all(
    ports.map(async (port) => {
      const text = await readFile(path.join(dir, `redis-${port}.log`), 'utf8').catch(() => '');
      return `--- redis-${port}.log\n${text.split('\n').slice(-8).join('\n')}`;
    }),
  );
  return tails.join('\n');
}

/** Starts the cluster; on any failure everything started so far is stopped and removed. */
export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kbe-redis-cluster-'));
  const ports = await freePorts(masters);
  const children = ports.map((port) => startServer(dir, port));
  const clients: Cluster[] = [];
  // A crashed test run must not leave servers behind: kill exactly the processes started here.
  const killOnExit = () => {
    for (const child of children) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    for (const client of clients) client.disconnect();
    await Promise.all(children.map(stopServer));
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    for (const [i, child] of children.entries()) {
      if (child.exitCode !== null) throw new Error(`redis-server on port ${ports[i]} exited with ${child.exitCode}`);
    }
    await Promise.all(ports.map((port) => waitUntil(`redis-server :${port}`, deadline, () => withNode(port, async (c) => (await c.ping()) === 'PONG'))));
    await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `${HOST}:${port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: STARTUP_TIMEOUT_MS,
    });
    await Promise.all(
      ports.map((port) =>
        waitUntil(`cluster_state:ok on :${port}`, deadline, () =>
          withNode(port, async (c) => {
            const info = String(await c.call('CLUSTER', 'INFO'));
            return info.includes('cluster_state:ok') && info.includes('cluster_slots_ok:16384') && info.includes(`cluster_known_nodes:${masters}`);
          }),
        ),
      ),
    );
  } catch (err) {
    const logs = await logTails(dir, ports);
    await stop();
    throw new Error(`Redis Cluster did not start: ${err instanceof Error ? err.message : String(err)}\n${logs}`);
  }

  const nodes = ports.map((port) => ({ host: HOST, port }));
  return {
    nodes,
    async connect() {
      const client = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 2, connectTimeout: 2000 } });
      clients.push(client);
      await new Promise<void>((resolve, reject) => {
        client.once('ready', resolve);
        client.once('error', reject);
      });
      return client;
    },
    stop,
  };
}

// Redis helpers for the cache suites: clients for the shared server, prefix cleanup by SCAN, and a
// server-side count of the commands a client sent (MONITOR), which is how "one round trip" is checked.
import net from 'node:net';
import { Redis, type Cluster } from 'ioredis';
import { REDIS_URL } from './services.js';

/** A client for the shared test server that gives up quickly instead of retrying forever. */
export function createRedisClient(url = REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 2000, retryStrategy: (times) => (times > 3 ? null : 100) });
}

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** Deletes every key under `prefix` (SCAN MATCH, never FLUSHDB on a shared server); returns how many. */
export async function deleteKeysWithPrefix(client: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${globEscape(prefix)}*`, 'COUNT', 500);
    cursor = next;
    // One DEL per key: on a Cluster node, keys of different slots cannot share a DEL.
    for (const key of keys) deleted += await client.del(key);
  } while (cursor !== '0');
  return deleted;
}

/** A Redis server to watch: host and port. */
export interface RedisNodeAddress {
  host: string;
  port: number;
}

/** The connections a client sends commands on: the client itself, or every master of a Cluster. */
export function connectionsOf(client: Redis | Cluster): Redis[] {
  return 'nodes' in client && typeof client.nodes === 'function' ? client.nodes('master') : [client as Redis];
}

async function clientAddress(connection: Redis): Promise<string> {
  const info = String(await connection.call('CLIENT', 'INFO'));
  const match = /(?:^|\s)addr=(\S+)/.exec(info);
  if (!match?.[1]) throw new Error(`CLIENT INFO did not report an addr: ${info}`);
  return match[1];
}

/** One MONITOR line: the command's arguments and the client address it came from ("lua" inside scripts). */
interface MonitorLine {
  args: string[];
  source: string;
}

/** Parses `+<time> [<db> <source>] "arg" "arg" …` (arguments quoted, with C-style escapes). */
function parseMonitorLine(line: string): MonitorLine | null {
  const head = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] /.exec(line);
  if (!head) return null;
  const args: string[] = [];
  const quoted = /"((?:[^"\\]|\\.)*)"/g;
  for (let match = quoted.exec(line.slice(head[0].length)); match; match = quoted.exec(line.slice(head[0].length))) {
    args.push(match[1]!.replace(/\\(x[0-9a-f]{2}|.)/g, (_, e: string) => (e.length === 3 ? String.fromCharCode(parseInt(e.slice(1), 16)) : e)));
  }
  return { args, source: head[1]! };
}

/**
 * A MONITOR session on a raw socket. (ioredis's monitor mode can mistake the first lines of a busy
 * server for the reply to MONITOR and then throw from its socket handler, failing unrelated tests.)
 */
async function openMonitor({ host, port }: RedisNodeAddress, onLine: (line: MonitorLine) => void): Promise<net.Socket> {
  const socket = net.connect({ host, port });
  socket.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    let buffer = '';
    let started = false;
    socket.once('error', reject);
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let end = buffer.indexOf('\r\n');
      while (end >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!started) {
          if (line !== '+OK') return reject(new Error(`MONITOR answered ${line}`));
          started = true;
          resolve();
        } else {
          const parsed = parseMonitorLine(line);
          if (parsed) onLine(parsed);
        }
        end = buffer.indexOf('\r\n');
      }
    });
    socket.write('MONITOR\r\n');
  });
  return socket;
}

/**
 * Runs `action` while MONITOR watches `nodes`, and returns the commands that arrived from the
 * connections of `client` (commands run inside scripts report the source "lua" and are not counted:
 * they cost no round trip). A marker ECHO on each node closes the window, so no late line is missed.
 */
export async function commandsSentDuring(
  nodes: RedisNodeAddress[],
  client: Redis | Cluster,
  action: () => Promise<unknown>,
  /** Return the commands scripts ran instead (source "lua", from any connection): the work a script did. */
  { scripted = false }: { scripted?: boolean } = {},
): Promise<string[][]> {
  const sources = new Set(await Promise.all(connectionsOf(client).map(clientAddress)));
  const seen: string[][] = [];
  const marker = `kbe-monitor-end-${Math.random().toString(36).slice(2)}`;
  const markers: Promise<void>[] = [];
  const monitors: net.Socket[] = [];
  const controls: Redis[] = [];
  try {
    for (const node of nodes) {
      let markerSeen: () => void = () => {};
      markers.push(new Promise<void>((resolve) => (markerSeen = resolve)));
      monitors.push(
        await openMonitor(node, ({ args, source }) => {
          if (args[0]?.toLowerCase() === 'echo' && args[1] === marker) markerSeen();
          else if (scripted ? source === 'lua' : sources.has(source)) seen.push(args);
        }),
      );
      controls.push(new Redis({ host: node.host, port: node.port, maxRetriesPerRequest: 1 }));
    }
    await action();
    await Promise.all(controls.map((control) => control.echo(marker)));
    await Promise.all(markers);
    return seen;
  } finally {
    for (const socket of monitors) socket.destroy();
    for (const control of controls) control.disconnect();
  }
}

/** The Writable hooks a socket sends through: each call is one write(2) or writev(2) of what was buffered. */
interface SocketWriteHooks {
  _write: (...args: unknown[]) => unknown;
  _writev?: (...args: unknown[]) => unknown;
}

/**
 * Runs `action` and returns how many socket writes each connection of `client` made meanwhile
 * (Writable `_write` and `_writev` calls, one system call each), in connectionsOf order.
 */
export async function socketWritesDuring(client: Redis | Cluster, action: () => Promise<unknown>): Promise<number[]> {
  const sockets = connectionsOf(client).map((connection) => (connection as unknown as { stream: SocketWriteHooks }).stream);
  const counts = sockets.map(() => 0);
  const restores = sockets.map((socket, i) => {
    const own = { _write: Object.getOwnPropertyDescriptor(socket, '_write'), _writev: Object.getOwnPropertyDescriptor(socket, '_writev') };
    for (const hook of ['_write', '_writev'] as const) {
      const original = socket[hook];
      if (original === undefined) continue;
      socket[hook] = function (this: unknown, ...args: unknown[]) {
        counts[i]!++;
        return original.apply(this, args);
      };
    }
    return () => {
      for (const hook of ['_write', '_writev'] as const) {
        if (own[hook]) Object.defineProperty(socket, hook, own[hook]);
        else delete socket[hook];
      }
    };
  });
  try {
    await action();
    return counts;
  } finally {
    for (const restore of restores) restore();
  }
}

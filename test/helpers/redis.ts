// Redis helpers for the cache suites: clients for the shared server, prefix cleanup by SCAN, and a
// server-side count of the commands a client sent (MONITOR), which is how "one round trip" is checked.
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

/**
 * Runs `action` while MONITOR watches `nodes`, and returns the commands that arrived from the
 * connections of `client` (commands run inside scripts report the source "lua" and are not counted:
 * they cost no round trip). A marker ECHO on each node closes the window, so no late line is missed.
 */
export async function commandsSentDuring(
  nodes: RedisNodeAddress[],
  client: Redis | Cluster,
  action: () => Promise<unknown>,
): Promise<string[][]> {
  const sources = new Set(await Promise.all(connectionsOf(client).map(clientAddress)));
  const seen: string[][] = [];
  const watchers = await Promise.all(
    nodes.map(async ({ host, port }) => {
      const control = new Redis({ host, port, maxRetriesPerRequest: 1, lazyConnect: true });
      await control.connect();
      const monitor = await control.monitor();
      return { control, monitor };
    }),
  );
  try {
    const marker = `kbe-monitor-end-${Math.random().toString(36).slice(2)}`;
    const markersSeen = watchers.map(({ monitor }) => new Promise<void>((resolve) => {
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        if (args[0]?.toLowerCase() === 'echo' && args[1] === marker) resolve();
        else if (sources.has(source)) seen.push(args);
      });
    }));
    await action();
    await Promise.all(watchers.map(({ control }) => control.echo(marker)));
    await Promise.all(markersSeen);
    return seen;
  } finally {
    for (const { control, monitor } of watchers) {
      monitor.disconnect();
      control.disconnect();
    }
  }
}

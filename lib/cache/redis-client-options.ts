// ioredis options for the billing cache's client that make a slow or lost Redis fail fast, so the
// checks fall back to the store or fail open (docs/behaviour.md) instead of holding requests for seconds.
import type { ClusterOptions, RedisOptions } from 'ioredis';

/** Every cache operation is one round trip of well under a millisecond on a healthy Redis. */
const COMMAND_TIMEOUT_MS = 100;
const CONNECT_TIMEOUT_MS = 1000;
/** A connection that has owed a reply this long is dead (black-holed): drop it and reconnect. */
const SOCKET_TIMEOUT_MS = 1000;
const RECONNECT_FIRST_DELAY_MS = 50;
/** Capped so that a restored Redis is used again about a second after it answers. */
const RECONNECT_MAX_DELAY_MS = 1000;

/** Exponential backoff from 50 ms, capped at 1 s, with a little jitter so many gateways do not reconnect in step. */
function reconnectDelayMs(times: number): number {
  const exponent = Math.min(Math.max(times, 1) - 1, 16);
  const delay = Math.min(RECONNECT_FIRST_DELAY_MS * 2 ** exponent, RECONNECT_MAX_DELAY_MS);
  return delay + Math.floor(Math.random() * RECONNECT_FIRST_DELAY_MS);
}

/** The per-connection part, shared by a single client and every node of a Cluster. */
const CONNECTION_DEFAULTS = Object.freeze({
  // Rejects a command that has no reply in time: a slow Redis costs each cache call at most this.
  commandTimeout: COMMAND_TIMEOUT_MS,
  connectTimeout: CONNECT_TIMEOUT_MS,
  socketTimeout: SOCKET_TIMEOUT_MS,
  // Commands in flight when the connection drops fail at once instead of waiting for a reconnect.
  maxRetriesPerRequest: 0,
  // A command already reported as failed must not run later behind the caller's back (e.g. an RPM hit).
  autoResendUnfulfilledCommands: false,
} satisfies RedisOptions);

const REDIS_DEFAULTS: Readonly<RedisOptions> = Object.freeze({
  ...CONNECTION_DEFAULTS,
  // While disconnected, commands fail immediately (no unbounded queue of waiting requests).
  enableOfflineQueue: false,
  retryStrategy: reconnectDelayMs,
});

const CLUSTER_DEFAULTS: Readonly<ClusterOptions> = Object.freeze({
  enableOfflineQueue: false,
  clusterRetryStrategy: reconnectDelayMs,
  // Retries after a closed connection or CLUSTERDOWN share the command's timeout; keep them few and short.
  retryDelayOnFailover: 50,
  retryDelayOnClusterDown: 50,
  retryDelayOnTryAgain: 50,
  maxRedirections: 6,
  slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
  redisOptions: CONNECTION_DEFAULTS,
});

function definedOnly<T extends object>(overrides: T | undefined, name: string): Partial<T> {
  if (overrides === undefined) return {};
  if (overrides === null || typeof overrides !== 'object' || Array.isArray(overrides)) {
    throw new TypeError(`${name} must be an options object, got ${overrides === null ? 'null' : typeof overrides}`);
  }
  return Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/**
 * Options for `new Redis(url, recommendedRedisOptions())`: commandTimeout 100 ms, connectTimeout 1 s,
 * socketTimeout 1 s, no offline queue, maxRetriesPerRequest 0, reconnect backoff 50 ms doubling to 1 s.
 * `overrides` win (undefined values are ignored). Without an offline queue, commands sent before the
 * first connection is ready fail (the checks then read the store): wait for 'ready' before serving.
 * Add an 'error' listener to the client: ioredis reports every lost connection there.
 */
export function recommendedRedisOptions(overrides?: RedisOptions): RedisOptions {
  return { ...REDIS_DEFAULTS, ...definedOnly(overrides, 'recommendedRedisOptions overrides') };
}

/**
 * Options for `new Cluster(nodes, recommendedClusterOptions())`: the same per-node timeouts under
 * `redisOptions`, no offline queue, capped cluster reconnect backoff, short failover retries.
 * `overrides.redisOptions` is merged into the recommended `redisOptions`; other keys replace.
 */
export function recommendedClusterOptions(overrides?: ClusterOptions): ClusterOptions {
  const given = definedOnly(overrides, 'recommendedClusterOptions overrides');
  const redisOptions = { ...CONNECTION_DEFAULTS, ...definedOnly(given.redisOptions, 'recommendedClusterOptions overrides.redisOptions') };
  return { ...CLUSTER_DEFAULTS, ...given, redisOptions };
}

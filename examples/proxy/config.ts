// The example gateway's configuration, read from the environment once and validated with errors naming the variable.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Default data folder (git-ignored): the embedded SQLite file and the demo keys live here. */
export const DEFAULT_DATA_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'data');

export interface MockUpstreamSettings {
  /** Delay before the mock answers (or sends its first SSE event), in ms. */
  latencyMs: number;
  /** Delay between streamed chunks, in ms. */
  chunkDelayMs: number;
  /** Longest reply the mock produces, in words (each word is one completion token). */
  maxReplyWords: number;
}

/** Live metering of streamed answers (docs/stream-metering.md). */
export interface MeteringSettings {
  /** STREAM_METERING (on | off, default on): reserve a first slice and grow the hold as a stream runs; off = reserve the worst case. */
  enabled: boolean;
  /** METERING_SLICE_TOKENS (default 256): output tokens per slice, at the model's output price. */
  sliceTokens: number;
}

export interface RedisNode {
  host: string;
  port: number;
}

export interface ProxyConfig {
  /** PORT (default 3000; 0 = any free port). */
  port: number;
  /** HOST (default 127.0.0.1; set 0.0.0.0 in a container). */
  host: string;
  /** DATABASE_URL: postgres://…; null = the embedded SQLite file in dataDir. */
  databaseUrl: string | null;
  /** DATABASE_SCHEMA: PostgreSQL schema for every table (created if missing); null = the server's default. */
  databaseSchema: string | null;
  /** DATA_DIR (default examples/proxy/data): the SQLite file and demo-keys.json. */
  dataDir: string;
  /** REDIS_URL: redis://…; null with no cluster = the in-process memory cache. */
  redisUrl: string | null;
  /** REDIS_CLUSTER_NODES: "host:port,host:port"; exclusive with REDIS_URL. */
  redisClusterNodes: RedisNode[] | null;
  /** REDIS_PREFIX (default "kbe:"): key prefix of the billing cache. */
  redisPrefix: string;
  /** UPSTREAM_URL: base URL the /v1/… paths are appended to; null = the bundled mock upstream. */
  upstreamUrl: string | null;
  /** UPSTREAM_API_KEY: sent upstream as the route's credential. */
  upstreamApiKey: string | null;
  /** ADMIN_TOKEN: bearer token of the /admin routes; null = generate one at start and print it. */
  adminToken: string | null;
  /** BILLING_TIMEZONE (default UTC): IANA zone of the daily/weekly windows. */
  timezone: string;
  /** MAX_BODY_BYTES (default 1 MiB): larger request bodies are refused with 413. */
  maxBodyBytes: number;
  /** LOG_LEVEL (default info). */
  logLevel: string;
  /** SHUTDOWN_TIMEOUT_MS (default 25000): how long shutdown waits for in-flight requests before cutting them. */
  shutdownTimeoutMs: number;
  /**
   * SETTLEMENT_DRAIN_TIMEOUT_MS (default 5000): after the requests, how long shutdown keeps retrying
   * settlements the store did not take; what is still unstored then is logged with its content.
   */
  settlementDrainTimeoutMs: number;
  /** MOCK_LATENCY_MS, MOCK_CHUNK_DELAY_MS, MOCK_MAX_REPLY_WORDS: the bundled mock upstream. */
  mockUpstream: MockUpstreamSettings;
  /** STREAM_METERING, METERING_SLICE_TOKENS. */
  metering: MeteringSettings;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function text(env: Env, name: string): string | null {
  const value = env[name]?.trim();
  return value ? value : null;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(name, `must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Parses a URL and checks its scheme; the value itself is never echoed, it may hold a password. */
function url(env: Env, name: string, schemes: string[]): string | null {
  const raw = text(env, name);
  if (raw === null) return null;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be a URL (${schemes.map((s) => `${s}//…`).join(' or ')})`);
  }
  if (!schemes.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${schemes.join(' or ')}, got ${parsed.protocol}`);
  }
  return raw;
}

function clusterNodes(env: Env): RedisNode[] | null {
  const raw = text(env, 'REDIS_CLUSTER_NODES');
  if (raw === null) return null;
  return raw.split(',').map((entry) => {
    const match = /^\[?([^\]\s]+?)\]?:(\d{1,5})$/.exec(entry.trim());
    const port = Number(match?.[2]);
    if (!match?.[1] || port < 1 || port > 65535) {
      throw new ConfigError('REDIS_CLUSTER_NODES', `must be a comma-separated list of host:port, got ${JSON.stringify(entry.trim())}`);
    }
    return { host: match[1], port };
  });
}

function onOff(env: Env, name: string, fallback: boolean): boolean {
  const raw = text(env, name);
  if (raw === null) return fallback;
  if (raw === 'on') return true;
  if (raw === 'off') return false;
  throw new ConfigError(name, `must be "on" or "off", got ${JSON.stringify(raw)}`);
}

function timezone(env: Env): string {
  const zone = text(env, 'BILLING_TIMEZONE') ?? 'UTC';
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    throw new ConfigError('BILLING_TIMEZONE', `must be an IANA time zone such as "UTC" or "Europe/Berlin", got ${JSON.stringify(zone)}`);
  }
}

/** Reads and validates the configuration; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): ProxyConfig {
  const redisUrl = url(env, 'REDIS_URL', ['redis:', 'rediss:']);
  const redisClusterNodes = clusterNodes(env);
  if (redisUrl && redisClusterNodes) {
    throw new ConfigError('REDIS_CLUSTER_NODES', 'set either REDIS_URL or REDIS_CLUSTER_NODES, not both');
  }
  const databaseSchema = text(env, 'DATABASE_SCHEMA');
  if (databaseSchema !== null && !/^[a-z_][a-z0-9_]{0,62}$/.test(databaseSchema)) {
    throw new ConfigError('DATABASE_SCHEMA', `must be a lower-case identifier ([a-z_][a-z0-9_]*), got ${JSON.stringify(databaseSchema)}`);
  }
  const redisPrefix = text(env, 'REDIS_PREFIX') ?? 'kbe:';
  if (!/^[A-Za-z0-9:_.-]{1,64}$/.test(redisPrefix)) {
    throw new ConfigError('REDIS_PREFIX', `must be 1-64 characters of [A-Za-z0-9:_.-], got ${JSON.stringify(redisPrefix)}`);
  }
  const adminToken = text(env, 'ADMIN_TOKEN');
  if (adminToken !== null && (adminToken.length < 16 || /\s/.test(adminToken))) {
    throw new ConfigError('ADMIN_TOKEN', 'must be at least 16 characters without spaces');
  }
  const logLevel = text(env, 'LOG_LEVEL') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  const upstreamUrl = url(env, 'UPSTREAM_URL', ['http:', 'https:']);
  return {
    port: integer(env, 'PORT', 3000, 0, 65535),
    host: text(env, 'HOST') ?? '127.0.0.1',
    databaseUrl: url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    databaseSchema,
    dataDir: path.resolve(text(env, 'DATA_DIR') ?? DEFAULT_DATA_DIR),
    redisUrl,
    redisClusterNodes,
    redisPrefix,
    upstreamUrl: upstreamUrl === null ? null : upstreamUrl.replace(/\/+$/, '').replace(/\/v1$/, ''),
    upstreamApiKey: text(env, 'UPSTREAM_API_KEY'),
    adminToken,
    timezone: timezone(env),
    maxBodyBytes: integer(env, 'MAX_BODY_BYTES', 1024 * 1024, 1024, 64 * 1024 * 1024),
    logLevel,
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 25_000, 0, 600_000),
    settlementDrainTimeoutMs: integer(env, 'SETTLEMENT_DRAIN_TIMEOUT_MS', 5_000, 0, 600_000),
    mockUpstream: {
      latencyMs: integer(env, 'MOCK_LATENCY_MS', 50, 0, 60_000),
      chunkDelayMs: integer(env, 'MOCK_CHUNK_DELAY_MS', 20, 0, 10_000),
      maxReplyWords: integer(env, 'MOCK_MAX_REPLY_WORDS', 24, 1, 100_000),
    },
    metering: {
      enabled: onOff(env, 'STREAM_METERING', true),
      sliceTokens: integer(env, 'METERING_SLICE_TOKENS', 256, 1, 1_000_000),
    },
  };
}

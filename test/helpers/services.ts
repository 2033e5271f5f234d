// Locates the real services the integration suites need, and decides what a missing one means:
// a loud skip on a developer machine, a failure under CI=true.
import net from 'node:net';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/** Resolves whether a TCP connection to host:port opens within timeoutMs. */
export function canConnect(url: string, defaultPort: number, timeoutMs = 1000): Promise<boolean> {
  const parsed = new URL(url);
  const port = Number(parsed.port || defaultPort);
  const host = parsed.hostname || '127.0.0.1';
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Call in a suite's `before`: skips the suite (saying so loudly) when the service is missing,
 * or fails it under CI, where every service must be there.
 */
export async function requireService(context: Mocha.Context, name: string, url: string, defaultPort: number): Promise<void> {
  if (await canConnect(url, defaultPort)) return;
  if (IN_CI) throw new Error(`${name} is not answering at ${url}; CI requires it`);
  console.warn(`\n  !!! SKIPPING: ${name} is not answering at ${url} — these tests did NOT run !!!\n`);
  context.skip();
}

export const requireRedis = (context: Mocha.Context) => requireService(context, 'Redis', REDIS_URL, 6379);
export const requirePostgres = (context: Mocha.Context) => requireService(context, 'PostgreSQL', DATABASE_URL, 5432);

/** A short random suffix for per-test key prefixes, schemas and ids. */
export function uniqueSuffix(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

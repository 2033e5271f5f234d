// `npm start`: runs the example gateway on an HTTP server with graceful shutdown. Importing this file only
// exports createApp / startServer (for tests); it listens only when run directly.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createApp, type CreateAppOptions, type Gateway } from './app.js';
import { formatBanner } from './banner.js';
import { ConfigError, loadConfig, type ProxyConfig } from './config.js';

export { createApp, type CreateAppOptions, type Gateway } from './app.js';
export { loadConfig, ConfigError, type ProxyConfig } from './config.js';

export interface RunningServer {
  gateway: Gateway;
  server: http.Server;
  /** e.g. http://127.0.0.1:3000 */
  url: string;
  /** Stops accepting, lets in-flight requests finish (cut after shutdownTimeoutMs), drains settlements, closes clients. */
  shutdown(): Promise<void>;
}

export async function startServer(config: ProxyConfig, options: CreateAppOptions = {}): Promise<RunningServer> {
  const gateway = await createApp(config, options);
  const server = http.createServer(gateway.app.callback());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    await gateway.close();
    throw err;
  }
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  // Responses not yet sent when shutdown starts, and any that a kept-alive connection asks for during
  // it, carry `Connection: close`: each connection then ends after its current response.
  const unsent = new Set<http.ServerResponse>();
  let stopping: Promise<void> | undefined;
  server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    if (stopping) return res.setHeader('Connection', 'close');
    unsent.add(res);
    res.once('close', () => unsent.delete(res));
  });
  const shutdown = () => {
    stopping ??= (async () => {
      gateway.logger.info({ inFlight: gateway.inFlight.size }, 'shutting down: no new connections, finishing in-flight requests');
      for (const res of unsent) if (!res.headersSent) res.setHeader('Connection', 'close');
      unsent.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive connections that go idle are closed as soon as they do; busy ones finish first.
      const idleSweep = setInterval(() => server.closeIdleConnections(), 100);
      const deadline = setTimeout(() => {
        gateway.logger.warn('shutdown timeout: cutting the remaining connections (their streams are still settled)');
        server.closeAllConnections();
      }, config.shutdownTimeoutMs);
      server.closeIdleConnections();
      try {
        await closed;
        await gateway.close();
      } finally {
        clearInterval(idleSweep);
        clearTimeout(deadline);
      }
      gateway.logger.info('shutdown complete');
    })();
    return stopping;
  };
  return { gateway, server, url: `http://${host}:${address.port}`, shutdown };
}

function describeStorage(config: ProxyConfig): { storage: string; cache: string } {
  return {
    storage: config.databaseUrl ? `PostgreSQL${config.databaseSchema ? ` (schema ${config.databaseSchema})` : ''}` : `SQLite in ${config.dataDir}`,
    cache: config.redisClusterNodes ? `Redis Cluster (${config.redisClusterNodes.length} seed nodes)` : config.redisUrl ? 'Redis' : 'in-process memory',
  };
}

async function main(): Promise<void> {
  let config: ProxyConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`Configuration error: ${err.message}\n`);
    process.exit(1);
  }
  const running = await startServer(config);
  const { gateway } = running;
  // The banner is for the person at the terminal, so it goes to stderr: stdout carries only JSON logs.
  process.stderr.write(
    formatBanner({
      baseUrl: running.url,
      upstreamUrl: gateway.upstreamUrl,
      usingMockUpstream: gateway.mockUpstream !== null,
      ...describeStorage(config),
      demoKeys: gateway.demoKeys,
      generatedAdminToken: gateway.adminTokenGenerated ? gateway.adminToken : null,
    }),
  );

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      process.stderr.write(`${signal} again: exiting without waiting\n`);
      process.exit(1);
    }
    signalled = true;
    running.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        gateway.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return fs.realpathSync(entry) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().catch((err: unknown) => {
    process.stderr.write(`The gateway failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}

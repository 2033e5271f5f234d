// Child-process entry: runs one app under test on a loopback port, so the server never shares an
// event loop with the load generator. Talks to the parent over IPC: 'ready' with the port, then 'stop'.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { APP_IDS, createApp, type AppId } from './apps.js';

export interface ServerReady {
  type: 'ready';
  port: number;
}

async function main(): Promise<void> {
  const id = process.env.BENCH_APP as AppId;
  if (!APP_IDS.includes(id)) throw new Error(`BENCH_APP must be one of ${APP_IDS.join(', ')}, got ${String(id)}`);
  if (!process.send) throw new Error('server.ts runs as a child process of test/bench/run.ts');
  const running = await createApp(id, {
    pgSchema: process.env.BENCH_PG_SCHEMA ?? '',
    redisPrefix: process.env.BENCH_REDIS_PREFIX ?? '',
    autoPipelining: process.env.BENCH_AUTO_PIPELINING === '1',
  });
  // One failing request is enough to see why; thousands of identical stack traces are not.
  running.app.silent = true;
  let reported = false;
  running.app.on('error', (err: unknown) => {
    if (reported) return;
    reported = true;
    console.error(`[bench ${id}] first request error (the run will report the non-2xx count):`, err);
  });
  const server = http.createServer(running.app.callback());
  // Load is generated with keep-alive; the default 5 s would drop idle connections between rounds.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await running.close();
    // process.exit, not a natural end: --cpu-prof writes its profile on exit either way, and a
    // forgotten handle must not keep a benchmark server alive.
    process.exit(0);
  };
  process.on('message', (message) => {
    if (message === 'stop') void stop();
  });
  process.on('disconnect', () => void stop());
  const ready: ServerReady = { type: 'ready', port: (server.address() as AddressInfo).port };
  process.send(ready);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

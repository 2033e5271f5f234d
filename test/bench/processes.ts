// Starts a benchmark entry (server or memory run) as a child Node process, from the compiled build
// (test/bench/build.ts), optionally under --cpu-prof, and exchanges IPC messages with it.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compiledEntry } from './build.js';

/** Where --cpu-prof writes (BENCH_PROFILE_DIR); outside the repository by default, so profiles never get committed. */
export const PROFILE_DIR = process.env.BENCH_PROFILE_DIR ?? path.join(os.tmpdir(), 'kbe-bench-profiles');

export interface Child {
  process: ChildProcess;
  /** The first IPC message of the given type (rejects if the child exits first). */
  message<T extends { type: string }>(type: T['type']): Promise<T>;
  /** Sends 'stop' and waits for the exit (killed after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
}

/** A program the child's Node runs under (valgrind): `command args… node nodeArgs… entry`. */
export interface ChildWrapper {
  command: string;
  args: string[];
}

/**
 * `entry`: a TypeScript entry relative to test/bench ('./server.ts'); its compiled JavaScript runs
 * (buildBench first), under `wrapper` when given (its pid is then the wrapped Node's: valgrind runs
 * its guest in its own process).
 */
export function startChild(entry: string, env: Record<string, string>, profile: boolean, wrapper?: ChildWrapper): Child {
  const execArgv: string[] = [];
  if (profile) {
    mkdirSync(PROFILE_DIR, { recursive: true });
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`);
  }
  // fork() runs `execPath ...execArgv entry`, so a wrapper goes in front of Node's own arguments.
  const child = fork(compiledEntry(entry), [], {
    ...(wrapper && { execPath: wrapper.command }),
    execArgv: wrapper ? [...wrapper.args, process.execPath, ...execArgv] : execArgv,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // A child that already finished closes its IPC channel; a late 'stop' must not crash the parent.
  child.on('error', (err) => console.error(`[bench] ${entry} (${env.BENCH_APP ?? 'child'}): ${err.message}`));
  return {
    process: child,
    message<T extends { type: string }>(type: T['type']) {
      return new Promise<T>((resolve, reject) => {
        const onMessage = (message: unknown) => {
          if (typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type) {
            child.off('message', onMessage);
            resolve(message as T);
          }
        };
        child.on('message', onMessage);
        void exited.then((code) => reject(new Error(`${entry} (${env.BENCH_APP ?? 'child'}) exited with code ${String(code)} before sending '${type}'`)));
      });
    },
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send('stop', () => {});
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

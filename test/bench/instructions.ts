// Part four: instructions per request of each app's server, counted by valgrind's callgrind. Unlike
// req/s on a shared VM (±15–30 % within minutes), a count is the same from run to run (±1.5 %), so it
// shows what a change to the request path costs or saves even when the machine is busy.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { AppId } from './apps.js';
import type { BenchConfig } from './config.js';
import { assertClean, serverEnv, type HttpSettings } from './http-bench.js';
import { runRequests, type LoadResult } from './load.js';
import { startChild } from './processes.js';
import type { ServerReady } from './server.js';
import { round } from './stats.js';

const run = promisify(execFile);

export interface InstructionCount {
  /** Instructions per request on the thread that runs JavaScript (the event loop). */
  mainThread: number;
  /** The same over every thread of the process: GC helpers and the optimising compiler included. */
  allThreads: number;
}

export interface InstructionResults {
  requests: number;
  warmupRequests: number;
  apps: Partial<Record<AppId, InstructionCount>>;
  /**
   * Main-thread instructions of the first app over the second's: the req/s ratio the two would show
   * if throughput followed the event loop's instructions (it also pays for system calls and cache
   * misses, which this does not count). Present when both apps were counted.
   */
  ratios: Partial<Record<'b/a' | 'c/a' | 'c/d' | 'bm/b' | 'af/a' | 'bf/a' | 'cf/d', number>>;
}

/** Whether valgrind (with callgrind_control, from the same package) can be run here. */
export function valgrindAvailable(): boolean {
  return ['valgrind', 'callgrind_control'].every((command) => spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0);
}

/** The instruction total of one callgrind dump file ("summary:" line; "totals:" in older formats). */
export function dumpInstructions(text: string): number {
  const match = /^(?:summary|totals):\s+(\d+)/m.exec(text);
  if (!match) throw new Error('callgrind dump without a summary line');
  return Number(match[1]);
}

/**
 * Adds up one dump (callgrind --separate-threads=yes writes `<out>.<dump>-<thread>`, thread 01
 * being the main thread) into instructions per request.
 */
export function countFromDumps(files: readonly { name: string; text: string }[], dump: number, requests: number): InstructionCount {
  let main: number | undefined;
  let all = 0;
  for (const { name, text } of files) {
    const thread = new RegExp(`\\.${dump}-(\\d+)$`).exec(name);
    if (!thread) continue;
    const instructions = dumpInstructions(text);
    all += instructions;
    if (Number(thread[1]) === 1) main = instructions;
  }
  if (main === undefined) throw new Error(`callgrind dump ${dump}: no file for the main thread (…${dump}-01)`);
  return { mainThread: Math.round(main / requests), allThreads: Math.round(all / requests) };
}

/** Main-thread instructions of `base` over those of `app`: > 1 when `app` does less per request. */
function instructionRatio(apps: InstructionResults['apps'], app: AppId, base: AppId): number | undefined {
  const a = apps[app];
  const b = apps[base];
  return a && b ? round(b.mainThread / a.mainThread, 3) : undefined;
}

/** Every request answered 200, and exactly as many as were sent: the count is divided by them. */
function assertAnswered(id: AppId, result: LoadResult, expected: number): void {
  assertClean(id, result);
  if (result.requests !== expected) throw new Error(`${id} under callgrind: ${result.requests} of ${expected} requests answered`);
}

/**
 * One app: its server under callgrind with counting off, `warmupRequests` to settle the JIT, then
 * counting on for exactly `requests` requests, dumped, and the count divided by them. Everything
 * else the process does (start-up, warm-up, shutdown) is outside the count.
 */
async function countApp(id: AppId, config: BenchConfig, settings: HttpSettings): Promise<InstructionCount> {
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'kbe-callgrind-'));
  const child = startChild('./server.ts', serverEnv(id, config, settings), false, {
    command: 'valgrind',
    // --smc-check=all: V8 writes and rewrites machine code in its heap; without it valgrind would run stale code.
    args: [
      '--tool=callgrind',
      '--quiet',
      '--separate-threads=yes',
      '--instr-atstart=no',
      '--smc-check=all',
      `--callgrind-out-file=${path.join(outDir, 'out')}`,
    ],
  });
  try {
    // Several times slower under valgrind: start-up alone takes seconds.
    const { port } = await child.message<ServerReady>('ready');
    const url = `http://127.0.0.1:${port}/v1/chat/completions`;
    const pid = String(child.process.pid);
    if (config.instructionWarmupRequests > 0)
      assertAnswered(id, await runRequests(url, config.connections, config.instructionWarmupRequests), config.instructionWarmupRequests);
    await run('callgrind_control', ['--instr=on', pid]);
    assertAnswered(id, await runRequests(url, config.connections, config.instructionRequests), config.instructionRequests);
    await run('callgrind_control', ['--dump', pid]);
    await run('callgrind_control', ['--instr=off', pid]);
    const files = readdirSync(outDir).map((name) => ({ name, text: readFileSync(path.join(outDir, name), 'utf8') }));
    return countFromDumps(files, 1, config.instructionRequests);
  } finally {
    await child.stop(60_000);
    rmSync(outDir, { recursive: true, force: true });
  }
}

export async function runInstructionBench(config: BenchConfig, settings: HttpSettings, log: (line: string) => void): Promise<InstructionResults> {
  const apps: InstructionResults['apps'] = {};
  for (const id of config.instructionApps) {
    const count = await countApp(id, config, settings);
    apps[id] = count;
    log(`instructions ${id}: ${count.mainThread} per request on the main thread, ${count.allThreads} on all threads`);
  }
  const ratios: InstructionResults['ratios'] = {};
  const pairs: [keyof InstructionResults['ratios'], AppId, AppId][] = [
    ['b/a', 'chain-memory', 'bare'],
    ['c/a', 'chain-redis', 'bare'],
    ['c/d', 'chain-redis', 'rlf-redis'],
    ['bm/b', 'chain-memory-metrics', 'chain-memory'],
    ['af/a', 'bare-fields', 'bare'],
    ['bf/a', 'chain-memory-no-fields', 'bare'],
    ['cf/d', 'chain-redis-no-fields', 'rlf-redis'],
  ];
  for (const [key, app, base] of pairs) {
    const value = instructionRatio(apps, app, base);
    if (value !== undefined) ratios[key] = value;
  }
  return { requests: config.instructionRequests, warmupRequests: config.instructionWarmupRequests, apps, ratios };
}

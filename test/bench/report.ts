// Formats the benchmark results as the console/README table and assembles the JSON result file.
import os from 'node:os';
import { APP_IDS, APP_LABELS } from './apps.js';
import type { BenchConfig } from './config.js';
import type { HttpResults } from './http-bench.js';
import type { InstructionResults } from './instructions.js';
import type { MemoryResults } from './memory-bench.js';
import { meteringTable, type MeteringResults } from './metering-bench.js';
import type { SettleResults } from './settle-bench.js';

export interface BenchResults {
  startedAt: string;
  machine: { node: string; cpus: number; cpuModel: string; platform: string; totalMemMb: number; loadAvgAtStart: number[]; loadAvgAtEnd?: number[] };
  config: Omit<BenchConfig, 'parts' | 'profile'> & { parts: string[]; profile: string[] };
  http?: HttpResults;
  settle?: SettleResults;
  metering?: MeteringResults;
  memory?: MemoryResults;
  instructions?: InstructionResults;
  /** Parts that failed, with the reason; the parts before them are kept. */
  failures?: Record<string, string>;
}

export function machineInfo(): BenchResults['machine'] {
  const cpus = os.cpus();
  return {
    node: process.version,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    platform: `${os.platform()} ${os.release()}`,
    totalMemMb: Math.round(os.totalmem() / 1024 / 1024),
    // The machine may be shared: a high load average means other work competed with the run.
    loadAvgAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

/** A Markdown table (readable in a terminal as well). */
export function formatTables(results: BenchResults): string {
  const lines: string[] = [];
  const { http, settle, metering, memory, instructions, config, machine } = results;
  lines.push(
    `${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}; load average ${machine.loadAvgAtStart.join(' ')} at start${machine.loadAvgAtEnd ? `, ${machine.loadAvgAtEnd.join(' ')} at end` : ''}`,
    '',
  );
  if (http) {
    lines.push(
      `HTTP, ${config.connections} connections, ${config.durationS} s per app per round in turns of ${config.sliceS} s, ${config.rounds} rounds (medians):`,
      '',
    );
    lines.push(
      `| ${pad('app', 34)} | ${pad('req/s', 8, true)} | ${pad('p50 ms', 7, true)} | ${pad('p99 ms', 7, true)} | CPU µs/request: server / Redis / autocannon |`,
    );
    lines.push(`|${'-'.repeat(36)}|${'-'.repeat(9)}:|${'-'.repeat(8)}:|${'-'.repeat(8)}:|${'-'.repeat(44)}:|`);
    for (const id of APP_IDS) {
      const app = http.apps[id];
      const cpu = `${app.cpu.serverUs} / ${app.cpu.redisUs} / ${app.cpu.loadGeneratorUs}`;
      lines.push(
        `| ${pad(APP_LABELS[id], 34)} | ${pad(String(app.reqPerSec), 8, true)} | ${pad(app.p50Ms.toFixed(2), 7, true)} | ${pad(app.p99Ms.toFixed(2), 7, true)} | ${pad(cpu, 43, true)} |`,
      );
    }
    lines.push('', `| ${pad('ratio (median of per-round ratios)', 34)} | ${pad('value', 8, true)} | ${pad('target', 8)} | ${pad('met', 4)} | per round`);
    lines.push(`|${'-'.repeat(36)}|${'-'.repeat(9)}:|${'-'.repeat(10)}|${'-'.repeat(6)}|${'-'.repeat(10)}`);
    const names: Record<keyof HttpResults['ratios'], string> = {
      'b/a': '(b)/(a) req/s',
      'c/a': '(c)/(a) req/s',
      'c/d': '(c)/(d) req/s',
      'p99 c/a': 'p99 (c) / p99 (a)',
      'bm/b': '(b+m)/(b) req/s: metrics cost',
      'cr/c': '(c+r)/(c) req/s: reservation cost',
      'cr2000/cr': '(c+r2000)/(c+r) req/s: holds cost the same with 2,000 open',
      'Redis CPU cr/c': '(c+r)/(c) Redis CPU per request',
      'Redis CPU cr2000/cr': '(c+r2000)/(c+r) Redis CPU per request',
      'cs/c': '(c+s)/(c) req/s: settlement cost',
      'bf/a': '(b-f)/(a) req/s: no RateLimit',
      'cf/d': '(c-f)/(d) req/s: no RateLimit',
      'w/a': '(a+1µs)/(a) req/s: 1 µs of work',
      'af/a': '(a+f)/(a) req/s: fields alone',
      'b/af': '(b)/(a+f) req/s: checks alone',
      'd/a': '(d)/(a) req/s: one Redis limiter',
      'c/dw': '(c)/(d+w) req/s: same transport',
    };
    for (const [key, ratio] of Object.entries(http.ratios) as [keyof HttpResults['ratios'], HttpResults['ratios']['b/a']][]) {
      lines.push(
        `| ${pad(names[key], 34)} | ${pad(ratio.median.toFixed(2), 8, true)} | ${pad(ratio.target, 8)} | ${pad(ratio.met ? 'yes' : 'NO', 4)} | ${ratio.perRound.map((r) => r.toFixed(2)).join(', ')}`,
      );
    }
  }
  if (settle) {
    lines.push(
      '',
      `Settlements into PostgreSQL (Redis cache updated after each commit), ${config.settleDurationS} s per run, medians of ${settle.rounds} rounds:`,
      '',
    );
    lines.push('| run | settlements/s | p50 ms | p99 ms | mean batch | per round |', '|---|---:|---:|---:|---:|---|');
    for (const run of settle.runs) {
      lines.push(
        `| ${run.label} | ${run.perSec} | ${run.p50Ms.toFixed(2)} | ${run.p99Ms.toFixed(2)} | ${run.meanBatch.toFixed(1)} | ${run.perRound.join(', ')} |`,
      );
    }
    for (const ref of settle.references)
      lines.push(`| ${ref.label} (${ref.connections} connections) | ${ref.perSec} | | | ${ref.perTransaction} | ${ref.perRound.join(', ')} |`);
    lines.push('', '| ratio | value | target | met |', '|---|---:|---|---|');
    for (const t of settle.targets) lines.push(`| ${t.name} | ${t.value.toFixed(2)} | ${t.target} | ${t.met ? 'yes' : 'NO'} |`);
  }
  if (metering) lines.push('', ...meteringTable(metering, config.settleDurationS));
  if (memory) {
    const last = memory.samples.at(-1) ?? memory.before;
    lines.push(
      '',
      `Memory: ${memory.requests} checks over ${memory.users} users (each visited once with a burst of ${memory.checksPerVisit}, ${memory.concurrency} visits in flight; in-process core.check), memory cache maxEntries ${memory.maxEntries}:`,
      '',
    );
    lines.push('| | RSS MB | heap used MB | cache entries |', '|---|---:|---:|---:|');
    lines.push(`| before the checks (after seeding) | ${memory.before.rssMb} | ${memory.before.heapUsedMb} | ${memory.before.cacheEntries} |`);
    const peakRss = Math.max(...memory.samples.map((s) => s.rssMb));
    lines.push(`| after ${last.checks} checks | ${last.rssMb} | ${last.heapUsedMb} | ${last.cacheEntries} |`);
    lines.push(`| peak during the run | ${peakRss} | | ${memory.peakCacheEntries} |`);
    lines.push('', `RSS MB every ${memory.samples[0]?.checks ?? 0} checks: ${memory.samples.map((s) => s.rssMb).join(', ')}`);
    lines.push(
      `cache entries bounded by maxEntries: ${memory.boundedByMaxEntries ? 'yes' : 'NO'}; ${memory.checksPerSec} checks/s; ${memory.allowed} allowed, ${memory.denied} denied`,
    );
  }
  if (instructions) lines.push('', ...instructionTable(instructions, config.connections));
  for (const [part, reason] of Object.entries(results.failures ?? {})) lines.push('', `FAILED ${part}: ${reason}`);
  return lines.join('\n');
}

const INSTRUCTION_RATIO_NAMES: Record<keyof InstructionResults['ratios'], string> = {
  'b/a': '(b)/(a)',
  'c/a': '(c)/(a)',
  'c/d': '(c)/(d)',
  'bm/b': '(b+m)/(b): metrics',
  'af/a': '(a+f)/(a): fields alone',
  'bf/a': '(b-f)/(a): no RateLimit',
  'cf/d': '(c-f)/(d): no RateLimit',
};

function instructionTable(instructions: InstructionResults, connections: number): string[] {
  const lines = [
    `Instructions per request of the server process (callgrind; ${instructions.requests} requests counted after ${instructions.warmupRequests} unmeasured, ${connections} connections):`,
    '',
    `| ${pad('app', 34)} | main thread | all threads | (a) ÷ app, main thread |`,
    `|${'-'.repeat(36)}|------------:|------------:|-----------------------:|`,
  ];
  const bare = instructions.apps.bare;
  for (const id of APP_IDS) {
    const count = instructions.apps[id];
    if (!count) continue;
    const share = bare ? (bare.mainThread / count.mainThread).toFixed(2) : '';
    lines.push(
      `| ${pad(APP_LABELS[id], 34)} | ${pad(String(count.mainThread), 11, true)} | ${pad(String(count.allThreads), 11, true)} | ${pad(share, 22, true)} |`,
    );
  }
  const ratios = (Object.entries(instructions.ratios) as [keyof InstructionResults['ratios'], number][]).map(
    ([key, value]) => `${INSTRUCTION_RATIO_NAMES[key]} ${value.toFixed(2)}`,
  );
  if (ratios.length > 0) lines.push('', `As req/s ratios, if throughput followed the main thread's instructions: ${ratios.join('; ')}`);
  return lines;
}

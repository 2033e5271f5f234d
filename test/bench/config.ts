// Benchmark settings, read once from the environment so a run can be shortened or stretched without edits.
import { APP_IDS, type AppId } from './apps.js';

function integer(name: string, fallback: number, min: number, max: number): number {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new TypeError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

function positiveInt(name: string, fallback: number, max: number): number {
  return integer(name, fallback, 1, max);
}

export interface BenchConfig {
  /** Seconds of load per app per round (BENCH_DURATION_S, default 5). */
  durationS: number;
  /**
   * Seconds of one turn of load (BENCH_SLICE_S, default 1): within a round the apps take turns of
   * this length until each has had durationS, so a disturbance of the shared machine lasting
   * seconds lands on every app of the round alike instead of on the one app measured then.
   */
  sliceS: number;
  /**
   * Milliseconds of unmeasured load before each turn (BENCH_TURN_WARMUP_MS, default 500): a server
   * that sat idle while the others had their turns starts cold (an idle V8 shrinks its heap, for
   * one), and its first requests would measure that, which a server under steady load never sees.
   */
  turnWarmupMs: number;
  /** Rounds, each with fresh server processes taking turns; medians are taken over them (BENCH_ROUNDS, default 5: on a shared 2-core VM one disturbed round in three moves a median of three). */
  rounds: number;
  /** Concurrent HTTP connections of the load generator (BENCH_CONNECTIONS, default 50). */
  connections: number;
  /**
   * ioredis enableAutoPipelining on the Redis client of both Redis apps, (c) and (d) alike (BENCH_AUTO_PIPELINING=1|0,
   * default 0: ioredis's default, and what recommendedRedisOptions leaves it at; on, both apps spend more client CPU per request).
   */
  autoPipelining: boolean;
  /** Seconds of unmeasured load on each fresh server before its round's turns: JIT, pools and the cache warm up (BENCH_WARMUP_S, default 2). */
  warmupS: number;
  /** Seconds of each settlement run (BENCH_SETTLE_DURATION_S, default 5). */
  settleDurationS: number;
  /** Rounds of the settlement part, every configuration once per round (BENCH_SETTLE_ROUNDS, default 3). */
  settleRounds: number;
  /** Checks of the memory-bound run (BENCH_MEMORY_REQUESTS, default 1 000 000). */
  memoryRequests: number;
  /** Distinct users of the memory-bound run (BENCH_MEMORY_USERS, default 100 000). */
  memoryUsers: number;
  /** maxEntries of the memory cache in the memory-bound run (BENCH_MEMORY_MAX_ENTRIES, default 100 000). */
  memoryMaxEntries: number;
  /** Which parts run: any of http, settle, metering, memory, instructions, comma-separated (BENCH_PARTS, default all five). */
  parts: ReadonlySet<BenchPart>;
  /**
   * Whether BENCH_PARTS named the instructions part: then a machine without valgrind fails the run;
   * by default that part is skipped there with a line saying so.
   */
  instructionsRequired: boolean;
  /** Apps whose instructions per request are counted (BENCH_INSTRUCTION_APPS, comma-separated; default in INSTRUCTION_APPS). */
  instructionApps: readonly AppId[];
  /** Unmeasured requests before the count (BENCH_INSTRUCTION_WARMUP_REQUESTS, default 10 000): until the JIT has settled, compiling is counted too. */
  instructionWarmupRequests: number;
  /** Requests counted per app (BENCH_INSTRUCTION_REQUESTS, default 3 000). */
  instructionRequests: number;
  /** App ids whose server runs under `node --cpu-prof` (BENCH_PROFILE, e.g. "chain-redis"); profiles go to BENCH_PROFILE_DIR (default <tmpdir>/kbe-bench-profiles). */
  profile: ReadonlySet<string>;
  /** Where the JSON results go (BENCH_RESULTS, default bench-results.json at the repository root). */
  resultsPath: string;
}

function flag(name: string, fallback: boolean): boolean {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return fallback;
  if (text === '1' || text === '0') return text === '1';
  throw new TypeError(`${name} must be 1 or 0, got ${JSON.stringify(text)}`);
}

export type BenchPart = 'http' | 'settle' | 'metering' | 'memory' | 'instructions';
const PARTS: readonly BenchPart[] = ['http', 'settle', 'metering', 'memory', 'instructions'];

function parts(): ReadonlySet<BenchPart> {
  const chosen = new Set<BenchPart>();
  for (const part of list(process.env.BENCH_PARTS ?? PARTS.join(','))) {
    if (!PARTS.includes(part as BenchPart)) throw new TypeError(`BENCH_PARTS must list ${PARTS.join(', ')}, got ${JSON.stringify(part)}`);
    chosen.add(part as BenchPart);
  }
  return chosen;
}

function list(text: string): string[] {
  return text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/**
 * The apps counted by default: the references, the two chains with and without the RateLimit
 * fields and the memory chain with metrics — what the targets and the costs of fields and metrics
 * are read from — and rate-limiter-flexible.
 */
export const INSTRUCTION_APPS: readonly AppId[] = [
  'bare',
  'bare-fields',
  'chain-memory',
  'chain-memory-metrics',
  'chain-memory-no-fields',
  'chain-redis',
  'chain-redis-no-fields',
  'rlf-redis',
];

function instructionApps(): readonly AppId[] {
  const text = process.env.BENCH_INSTRUCTION_APPS;
  if (text === undefined || text.trim() === '') return INSTRUCTION_APPS;
  const apps = list(text);
  for (const app of apps) {
    if (!APP_IDS.includes(app as AppId)) throw new TypeError(`BENCH_INSTRUCTION_APPS must list app ids (${APP_IDS.join(', ')}), got ${JSON.stringify(app)}`);
  }
  // The ratios are against bare Koa, so it is always counted.
  return [...new Set(['bare', ...apps])] as AppId[];
}

export function readConfig(): BenchConfig {
  const durationS = positiveInt('BENCH_DURATION_S', 5, 3600);
  const sliceS = positiveInt('BENCH_SLICE_S', 1, 3600);
  if (durationS % sliceS !== 0) throw new TypeError(`BENCH_DURATION_S (${durationS}) must be a multiple of BENCH_SLICE_S (${sliceS})`);
  const chosenParts = parts();
  return Object.freeze({
    durationS,
    sliceS,
    turnWarmupMs: integer('BENCH_TURN_WARMUP_MS', 500, 0, 60_000),
    rounds: positiveInt('BENCH_ROUNDS', 5, 100),
    connections: positiveInt('BENCH_CONNECTIONS', 50, 10_000),
    autoPipelining: flag('BENCH_AUTO_PIPELINING', false),
    warmupS: positiveInt('BENCH_WARMUP_S', 2, 600),
    settleDurationS: positiveInt('BENCH_SETTLE_DURATION_S', 5, 3600),
    settleRounds: positiveInt('BENCH_SETTLE_ROUNDS', 3, 100),
    memoryRequests: positiveInt('BENCH_MEMORY_REQUESTS', 1_000_000, 100_000_000),
    memoryUsers: positiveInt('BENCH_MEMORY_USERS', 100_000, 10_000_000),
    memoryMaxEntries: positiveInt('BENCH_MEMORY_MAX_ENTRIES', 100_000, 100_000_000),
    parts: chosenParts,
    instructionsRequired: process.env.BENCH_PARTS !== undefined && chosenParts.has('instructions'),
    instructionApps: instructionApps(),
    instructionWarmupRequests: integer('BENCH_INSTRUCTION_WARMUP_REQUESTS', 10_000, 0, 10_000_000),
    instructionRequests: positiveInt('BENCH_INSTRUCTION_REQUESTS', 3_000, 10_000_000),
    profile: new Set(list(process.env.BENCH_PROFILE ?? '')),
    resultsPath: process.env.BENCH_RESULTS ?? new URL('../../bench-results.json', import.meta.url).pathname,
  });
}

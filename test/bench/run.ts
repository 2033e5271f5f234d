// `npm run bench`: the HTTP comparison (the apps taking turns within rounds), settlements per second into
// PostgreSQL, and the memory bound of the memory cache; prints the tables and writes bench-results.json.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { pgKnex } from '../helpers/postgres.js';
import { createRedisClient, deleteKeysWithPrefix } from '../helpers/redis.js';
import { canConnect, DATABASE_URL, REDIS_URL } from '../helpers/services.js';
import { createBenchSchema, type BenchSchema } from './bench-schema.js';
import { buildBench } from './build.js';
import { readConfig } from './config.js';
import { runHttpBench } from './http-bench.js';
import { runInstructionBench, valgrindAvailable } from './instructions.js';
import type { MemoryResults } from './memory-bench.js';
import { startChild } from './processes.js';
import { formatTables, machineInfo, type BenchResults } from './report.js';
import { runMeteringBench } from './metering-bench.js';
import { runSettleBench } from './settle-bench.js';

const log = (line: string): void => console.log(`[bench] ${line}`);

async function requireServices(): Promise<void> {
  const missing = [];
  if (!(await canConnect(REDIS_URL, 6379))) missing.push(`Redis at ${REDIS_URL}`);
  if (!(await canConnect(DATABASE_URL, 5432))) missing.push(`PostgreSQL at ${DATABASE_URL}`);
  if (missing.length) throw new Error(`the benchmark needs ${missing.join(' and ')} (set REDIS_URL / DATABASE_URL)`);
}

async function runMemoryBench(): Promise<MemoryResults> {
  // Its own process, so the RSS it reports is the cache's run alone, not the load generator's.
  const child = startChild('./memory-bench.ts', {}, false);
  try {
    return await child.message<MemoryResults>('memory');
  } finally {
    await child.stop();
  }
}

async function main(): Promise<void> {
  const config = readConfig();
  const results: BenchResults = {
    startedAt: new Date().toISOString(),
    machine: machineInfo(),
    config: { ...config, parts: [...config.parts], profile: [...config.profile] },
  };
  const needsServices = config.parts.has('http') || config.parts.has('settle') || config.parts.has('metering') || config.parts.has('instructions');
  if (needsServices) await requireServices();
  log('compiling the package and the benchmark servers (tsc)');
  buildBench();
  // Short, like the default 'kbe:' a gateway uses: every warm request names seven keys, so a long
  // run-specific prefix would weigh on the chain's command (one key for rate-limiter-flexible).
  // Random enough to never meet another run's keys, and 'kbb:' marks them as the benchmark's.
  const redisPrefix = `kbb:${randomBytes(4).toString('hex')}:`;
  const redis = needsServices ? createRedisClient() : undefined;
  let pg: BenchSchema | undefined;
  let cleaned: Promise<void> | undefined;
  // Only what this run created: its schema and the keys under its prefix (never FLUSHDB).
  const cleanUp = () =>
    (cleaned ??= (async () => {
      await pg?.drop();
      if (redis) {
        await deleteKeysWithPrefix(redis, redisPrefix);
        redis.disconnect();
      }
    })());
  process.once('SIGINT', () => {
    log('interrupted: cleaning up');
    void cleanUp().finally(() => process.exit(130));
  });
  // A failing part is reported and the next one still runs: one broken service should not cost the rest.
  const part = async (name: string, run: () => Promise<void>): Promise<void> => {
    try {
      await run();
    } catch (err) {
      (results.failures ??= {})[name] = err instanceof Error ? err.message : String(err);
      console.error(`[bench] ${name} failed:`, err);
      process.exitCode = 1;
    }
  };
  try {
    if (needsServices) pg = await createBenchSchema();
    const schema = pg;
    if (config.parts.has('http') && schema && redis) {
      log(
        `HTTP: ${config.connections} connections, ${config.durationS} s × ${config.rounds} rounds per app in turns of ${config.sliceS} s; Redis auto-pipelining ${config.autoPipelining ? 'on' : 'off'}`,
      );
      await part('http', async () => {
        results.http = await runHttpBench(config, { pgSchema: schema.schema, redisPrefix }, redis, log);
      });
    }
    if (config.parts.has('settle') && schema && redis) {
      log(`settlements: 20 and 200 in flight, ${config.settleDurationS} s per run`);
      await part('settle', async () => {
        // As many connections as the one-per-transaction reference: batch size 1 gets as many as it can use.
        const knex = pgKnex(schema.schema, 22);
        try {
          results.settle = await runSettleBench(config, knex, redis, redisPrefix, schema.schema, config.settleRounds);
        } finally {
          await knex.destroy();
        }
      });
    }
    if (config.parts.has('metering') && schema && redis) {
      log(`stream metering: holds grown slice by slice on Redis, ${config.settleDurationS} s per run`);
      await part('metering', async () => {
        const knex = pgKnex(schema.schema, 4);
        try {
          results.metering = await runMeteringBench(config, knex, redis, redisPrefix);
        } finally {
          await knex.destroy();
        }
      });
    }
    if (config.parts.has('instructions') && schema) {
      if (valgrindAvailable()) {
        log(
          `instructions: ${config.instructionApps.join(', ')} under callgrind, ${config.instructionRequests} requests counted after ${config.instructionWarmupRequests}, ${config.connections} connections`,
        );
        await part('instructions', async () => {
          results.instructions = await runInstructionBench(config, { pgSchema: schema.schema, redisPrefix }, log);
        });
      } else if (config.instructionsRequired) {
        await part('instructions', () => Promise.reject(new Error('valgrind is not installed (Debian: apt-get install valgrind); it counts the instructions')));
      } else {
        log('instructions: SKIPPED, valgrind is not installed (Debian: apt-get install valgrind)');
      }
    }
    if (config.parts.has('memory')) {
      log(`memory: ${config.memoryRequests} checks over ${config.memoryUsers} users, maxEntries ${config.memoryMaxEntries}`);
      await part('memory', async () => {
        results.memory = await runMemoryBench();
      });
    }
  } finally {
    await cleanUp();
  }
  results.machine.loadAvgAtEnd = os.loadavg().map((l) => Math.round(l * 100) / 100);
  console.log(`\n${formatTables(results)}\n`);
  writeFileSync(config.resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  log(`results written to ${config.resultsPath}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

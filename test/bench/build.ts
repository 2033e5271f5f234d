// Compiles the package and the benchmark to JavaScript once per run, so the measured servers run what a
// gateway runs (the compiled package), not TypeScript transpiled on load by tsx, whose keep-names
// wrappers (`__name`) sit on the request path and are not in the published build.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/**
 * Inside the repository so the compiled files resolve koa, ioredis … from its node_modules; under
 * node_modules/.cache, where build tools keep such output, so it is never committed.
 */
export const BENCH_BUILD_DIR = path.join(ROOT, 'node_modules', '.cache', 'kbe-bench');

/** Compiles with the project's tsconfig (everything it type-checks) into BENCH_BUILD_DIR. */
export function buildBench(): void {
  rmSync(BENCH_BUILD_DIR, { recursive: true, force: true });
  mkdirSync(BENCH_BUILD_DIR, { recursive: true });
  execFileSync(
    path.join(ROOT, 'node_modules', '.bin', 'tsc'),
    [
      '-p',
      path.join(ROOT, 'tsconfig.json'),
      '--noEmit',
      'false',
      '--outDir',
      BENCH_BUILD_DIR,
      '--rootDir',
      ROOT,
      '--declaration',
      'false',
      '--sourceMap',
      'false',
    ],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  // node_modules/ ends Node's search for the enclosing package.json, so the output declares its own module type.
  writeFileSync(path.join(BENCH_BUILD_DIR, 'package.json'), `${JSON.stringify({ type: 'module' })}\n`);
}

/** The compiled counterpart of a benchmark entry given relative to test/bench (e.g. './server.ts'). */
export function compiledEntry(entry: string): string {
  return path.join(BENCH_BUILD_DIR, 'test', 'bench', entry.replace(/\.ts$/, '.js'));
}

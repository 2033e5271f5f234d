// Builds the package twice from the same sources with the same compiler: ES modules into dist/esm
// and CommonJS into dist/cjs, each with its own type declarations (docs/architecture.md, Packaging).
// A package.json in each output folder tells Node (and TypeScript) which module system its .js
// and .d.ts files are, whatever the root package says.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const tsc = path.join('node_modules', '.bin', 'tsc');
rmSync('dist', { recursive: true, force: true });
for (const [config, outDir, type] of [
  ['tsconfig.build.json', 'dist/esm', 'module'],
  ['tsconfig.build-cjs.json', 'dist/cjs', 'commonjs'],
]) {
  execFileSync(tsc, ['-p', config], { stdio: 'inherit' });
  mkdirSync(outDir, { recursive: true });
  writeFileSync(`${outDir}/package.json`, `${JSON.stringify({ type }, null, 2)}\n`);
}

// Builds the package twice from the same sources with the same compiler: ES modules into dist/esm
// and CommonJS into dist/cjs, each with its own type declarations (docs/architecture.md, Packaging).
// A package.json in each output folder tells Node (and TypeScript) which module system its .js
// and .d.ts files are, whatever the root package says.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

// The compiler's own entry, run by this Node (a .bin shim is a shell script, or a .cmd on Windows).
const typescript = createRequire(import.meta.url).resolve('typescript/package.json');
const tsc = path.join(path.dirname(typescript), JSON.parse(readFileSync(typescript, 'utf8')).bin.tsc);
rmSync('dist', { recursive: true, force: true });
for (const [config, outDir, type] of [
  ['tsconfig.build.json', 'dist/esm', 'module'],
  ['tsconfig.build-cjs.json', 'dist/cjs', 'commonjs'],
]) {
  execFileSync(process.execPath, [tsc, '-p', config], { stdio: 'inherit' });
  mkdirSync(outDir, { recursive: true });
  writeFileSync(`${outDir}/package.json`, `${JSON.stringify({ type }, null, 2)}\n`);
}

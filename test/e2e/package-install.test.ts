// The package as a user installs it: `npm pack`, the tarball installed into a throwaway app, then one
// request through billingEligibility from an ES module app (import) and from a CommonJS app
// (require), each loading the package and its /middleware entry point. Also checks that the tarball
// holds only what a user needs.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '../..');

/**
 * One app's source: an embedded store (SQLite in memory) and the memory cache, a user with a
 * balance, a Koa app with the whole chain, one request; prints the status, the body and the
 * fields that say what is left.
 */
function appSource(load: (specifier: string) => string): string {
  return `
${load('koa')}
${load('knex')}
${load('koa-billing-eligibility')}
${load('koa-billing-eligibility/middleware')}
const Koa = koa.default ?? koa;
const knexFactory = knex.default ?? knex;
async function main() {
  const db = knexFactory({ client: 'better-sqlite3', connection: { filename: ':memory:' }, useNullAsDefault: true });
  await kbe.migrateBillingSchema(db);
  const core = kbe.createBillingCore({ store: new kbe.KnexBillingStore(db), cache: new kbe.MemoryBillingCache() });
  await core.admin.setBalance('u1', '2.5');
  const app = new Koa();
  app.use(middleware.billingEligibility({ core, subject: () => ({ user: { id: 'u1', rpmLimit: 10 } }) }));
  app.use((ctx) => { ctx.body = { ok: true, mode: ctx.state.billing.mode }; });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const response = await fetch('http://127.0.0.1:' + server.address().port + '/v1/chat/completions', { method: 'POST' });
  const body = await response.json();
  console.log(JSON.stringify({ status: response.status, body, rateLimit: response.headers.get('ratelimit'), spend: response.headers.get('billing-spend') }));
  server.close();
  await core.close();
  await db.destroy();
}
main().catch((err) => { console.error(err); process.exit(1); });
`;
}

describe('the packed package, installed', function () {
  this.timeout(180_000);
  let dir: string;
  let tarball: string;
  let packedFiles: string[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kbe-pack-'));
    // prepack builds both outputs first.
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: REPO, maxBuffer: 16 * 1024 * 1024 });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    tarball = path.join(dir, packed!.filename);
    packedFiles = packed!.files.map((f) => f.path);
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'throwaway', private: true }));
    await run('npm', ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', '--no-package-lock'], { cwd: dir });
    // The optional SQLite driver compiles from source on install: the repository's build serves instead.
    symlinkSync(path.join(REPO, 'node_modules', 'better-sqlite3'), path.join(dir, 'node_modules', 'better-sqlite3'), 'dir');
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships only the two builds, their package markers, the README, LICENSE and CHANGELOG', () => {
    const files = packedFiles;
    const outside = files.filter((f) => !/^dist\/(esm|cjs)\/(lib|middleware)\/.+\.(js|d\.ts)$/.test(f));
    expect(outside.sort()).to.deep.equal(['CHANGELOG.md', 'LICENSE', 'README.md', 'dist/cjs/package.json', 'dist/esm/package.json', 'package.json']);
    expect(files).to.include.members([
      'dist/esm/lib/index.js',
      'dist/esm/lib/index.d.ts',
      'dist/cjs/lib/index.js',
      'dist/cjs/lib/index.d.ts',
      'dist/cjs/middleware/index.js',
    ]);
  });

  for (const [system, type, file, load] of [
    ['an ES module app (import)', 'module', 'app.mjs', (s: string) => `import * as ${binding(s)} from '${s}';`],
    ['a CommonJS app (require)', 'commonjs', 'app.cjs', (s: string) => `const ${binding(s)} = require('${s}');`],
  ] as const) {
    it(`serves one request through billingEligibility from ${system}`, async () => {
      const appDir = path.join(dir, type);
      mkdirSync(appDir, { recursive: true });
      writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({ type }));
      writeFileSync(path.join(appDir, file), appSource(load));
      const { stdout } = await run(process.execPath, [file], { cwd: appDir });
      const result = JSON.parse(stdout.trim().split('\n').pop()!);
      expect(result).to.deep.include({ status: 200, body: { ok: true, mode: 'balance' } });
      expect(result.rateLimit).to.match(/^"rpm-user";r=9;t=\d+$/);
      expect(result.spend).to.equal('"balance";r=2500000');
    });
  }
});

/** The local name an app binds a module to. */
function binding(specifier: string): string {
  return { koa: 'koa', knex: 'knex', 'koa-billing-eligibility': 'kbe', 'koa-billing-eligibility/middleware': 'middleware' }[specifier]!;
}

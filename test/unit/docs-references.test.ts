// The repository stands on its own: comments and docs point only into docs/, every file they name
// exists, and every #anchor names a heading of that file (GitHub's slugs).
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../..');
const tracked = (...paths: string[]) =>
  execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', ...paths], { cwd: REPO, encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
const SELF = 'test/unit/docs-references.test.ts';
// docs/api is generated from the comments scanned here.
const SOURCES = tracked('lib', 'middleware', 'examples', 'test', 'scripts', 'README.md', 'CHANGELOG.md', 'docs').filter(
  (f) => /\.(ts|mjs|md)$/.test(f) && !f.startsWith('docs/api/') && f !== SELF,
);

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, '')
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(path.join(REPO, file), 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => slug(m[1]!)));
}

describe('references in comments and docs', () => {
  it('never point at documents outside the repository or at issue numbers', () => {
    const outside = new RegExp(['SPEC §', 'DESIGN §', 'SPEC\\.md', 'DESIGN\\.md', '\\b[Ii]ssues? #?\\d+', '\\[ours\\b'].join('|'));
    const found = SOURCES.flatMap((file) =>
      readFileSync(path.join(REPO, file), 'utf8')
        .split('\n')
        .flatMap((line, i) => (outside.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(found).to.deep.equal([]);
  });

  it('name docs files that exist, and headings that exist in them', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of SOURCES) {
      const text = readFileSync(path.join(REPO, file), 'utf8');
      const inDocs = file.startsWith('docs/');
      for (const match of text.matchAll(/(?:\b(docs\/[\w./-]+\.md)|\]\(((?!https?:)[\w./-]+\.md))(#[\w-]+)?/g)) {
        const target = match[1] ?? path.normalize(path.join(inDocs || file.endsWith('.md') ? path.dirname(file) : '.', match[2]!));
        const anchor = match[3]?.slice(1);
        checked++;
        if (!existsSync(path.join(REPO, target))) broken.push(`${file}: ${match[0]} (no such file)`);
        else if (anchor !== undefined && !anchorsOf(target).has(anchor)) broken.push(`${file}: ${match[0]} (no heading #${anchor})`);
      }
    }
    expect(broken).to.deep.equal([]);
    expect(checked).to.be.greaterThan(50);
  });
});

// Summarises a V8 .cpuprofile (from BENCH_PROFILE / node --cpu-prof): self time by function and by
// file, so "what the profile shows" can be read without a browser. Usage: tsx test/bench/profile-summary.ts <file> [top] [all]
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function shortUrl(url: string): string {
  // Compiled benchmark servers (test/bench/build.ts) run from node_modules/.cache/kbe-bench/<source path>.js.
  const built = url.indexOf('/.cache/kbe-bench/');
  if (built >= 0) return url.slice(built + '/.cache/kbe-bench/'.length);
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) return url.slice(modules + 'node_modules/'.length);
  const repo = url.indexOf('/work/');
  return repo >= 0 ? url.slice(url.indexOf('/', repo + 6) + 1) : url || '(native)';
}

/** `includeAll`: inclusive time of every function (dependencies too), not only the package's. */
export function summarise(profile: CpuProfile, top: number, includeAll = false): string {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  for (const [i, id] of profile.samples.entries()) selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  // Idle time is the process waiting (for load, for Redis); shares are of the time it was busy.
  const idle = [...selfUs].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, us]) => a + us, 0);
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0) - idle;
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    const file = shortUrl(frame.url);
    const fn = `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  // Inclusive time of the package's own functions (lib/, middleware/): self plus everything they called.
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      const file = shortUrl(frame.url);
      if (!includeAll && !/^(lib|middleware)\//.test(file)) continue;
      const fn = `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
      if (seen.has(fn)) continue; // recursion counts once
      seen.add(fn);
      inclusive.set(fn, (inclusive.get(fn) ?? 0) + us);
    }
  }
  const table = (title: string, entries: Map<string, number>) => {
    const rows = [...entries].sort((a, b) => b[1] - a[1]).slice(0, top);
    return [title, ...rows.map(([name, us]) => `${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`)].join('\n');
  };
  return [
    `busy ${(total / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s (shares below are of busy time)`,
    table('self time by function:', byFunction),
    table('self time by file:', byFile),
    table("inclusive time of the package's functions:", inclusive),
  ].join('\n\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  const [file, top = '25', all] = process.argv.slice(2);
  if (!file) throw new Error('usage: tsx test/bench/profile-summary.ts <file.cpuprofile> [top] [all]');
  console.log(summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(top), all === 'all'));
}

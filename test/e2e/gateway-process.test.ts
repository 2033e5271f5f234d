// `npm start` as a user runs it: the entry file as a process, the printed curl command executed by a shell,
// and a graceful SIGTERM that lets an in-flight stream finish and be settled before the process exits 0.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');

/** Resolves with the accumulated text once it matches. */
function waitForOutput(read: () => string, pattern: RegExp, child: ChildProcess, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      const match = read().match(pattern);
      if (match) {
        clearInterval(timer);
        resolve(match);
      } else if (child.exitCode !== null || Date.now() > deadline) {
        clearInterval(timer);
        reject(new Error(`no ${pattern} in the gateway output:\n${read()}`));
      }
    }, 25);
    const deadline = Date.now() + timeoutMs;
  });
}

describe('example gateway e2e: the npm start process', function () {
  this.timeout(60_000);
  let child: ChildProcess | undefined;
  let dataDir: string;
  let stdout = '';
  let stderr = '';

  before(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbe-e2e-proc-'));
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATA_DIR: dataDir,
      PORT: '0',
      MOCK_LATENCY_MS: '0',
      MOCK_CHUNK_DELAY_MS: '5',
      MOCK_MAX_REPLY_WORDS: '400',
    };
    child = spawn(TSX, ['examples/proxy/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
  });

  after(() => {
    if (child && child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints demo keys, an admin token and curl commands that work as printed', async () => {
    const running = child as ChildProcess;
    await waitForOutput(() => stderr, /Admin token .*: (adm-\S+)/, running);
    expect(stderr).to.match(/alice\s+sk-\S+/);
    const curl = stderr
      .split('\n')
      .map((line) => line.trim())
      .find((line) => line.startsWith('curl ') && line.includes('/v1/chat/completions'));
    if (!curl) throw new Error(`no curl command in the banner:\n${stderr}`);
    const { stdout: answer } = await promisify(execFile)('sh', ['-c', curl], { timeout: 10_000 });
    const body = JSON.parse(answer);
    expect(body.object).to.equal('chat.completion');
    expect(body.usage.prompt_tokens).to.be.a('number');
    // The key is in the banner (stderr), never in the JSON logs (stdout).
    const key = /alice\s+(sk-\S+)/.exec(stderr)?.[1] as string;
    expect(stdout).to.include('"msg":"request settled"');
    expect(stdout.includes(key)).to.equal(false);
  });

  it('on SIGTERM refuses new connections, finishes the in-flight stream, settles it and exits 0', async () => {
    const running = child as ChildProcess;
    const url = new URL((/listening on (http:\/\/\S+)/.exec(stderr) as RegExpExecArray)[1] as string);
    const key = /alice\s+(sk-\S+)/.exec(stderr)?.[1] as string;
    const exited = new Promise<number | null>((resolve) => running.once('exit', (code) => resolve(code)));

    const streamed = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        new URL('/v1/chat/completions', url),
        { method: 'POST', agent: false, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } },
        (res) => {
          let text = '';
          let signalled = false;
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
            // Shut down while the 200-word stream (about a second) is still running.
            if (!signalled) {
              signalled = true;
              running.kill('SIGTERM');
            }
          });
          res.on('end', () => resolve(text));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ model: 'gpt-4o-mini', stream: true, max_tokens: 200, messages: [{ role: 'user', content: 'a long answer, please' }] }));
    });

    await waitForOutput(() => stdout, /shutting down/, running);
    const refused = await new Promise<boolean>((resolve) => {
      // No agent: a pooled keep-alive socket would bypass the closed listener.
      http.get(new URL('/healthz', url), { agent: false }, () => resolve(false)).on('error', () => resolve(true));
    });
    expect(refused, 'a new connection after SIGTERM').to.equal(true);

    expect(streamed.trimEnd().endsWith('data: [DONE]')).to.equal(true);
    const id = /"id":"(chatcmpl-[^"]+)"/.exec(streamed)?.[1] as string;
    expect(await exited).to.equal(0);
    const settled = stdout.indexOf(`"requestId":"${id}"`);
    expect(settled, 'the stream was settled').to.be.above(-1);
    expect(stdout.slice(settled)).to.include('"outputTokens":200').and.include('"msg":"shutdown complete"');
  });
});

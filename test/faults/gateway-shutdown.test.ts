// SIGTERM to the example gateway process while PostgreSQL is cut (through this test's TCP proxy): idle
// keep-alive connections close at once, in-flight responses carry `Connection: close`, streams finish,
// and the process exits within SHUTDOWN_TIMEOUT_MS + SETTLEMENT_DRAIN_TIMEOUT_MS, every settlement it
// could not store written to the log with its full content.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import knexFactory from 'knex';
import { DATABASE_URL, requirePostgres, uniqueSuffix } from '../helpers/services.js';
import { TcpFaultProxy } from '../helpers/tcp-proxy.js';
import { report, sleep, waitFor } from './fault-env.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const SHUTDOWN_TIMEOUT_MS = 6000;
const SETTLEMENT_DRAIN_TIMEOUT_MS = 2000;
const STREAMS = 4;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

function send(url: URL, key: string, body: object, agent: http.Agent | false, onFirstData?: () => void): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (text === '') onFirstData?.();
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('faults: SIGTERM to the gateway process while PostgreSQL is cut', function () {
  this.timeout(90_000);
  let proxy: TcpFaultProxy;
  let child: ChildProcess | undefined;
  let dataDir: string;
  const schema = `kbe_shutdown_${uniqueSuffix()}`;
  let stdout = '';
  let stderr = '';

  before(async function () {
    await requirePostgres(this);
    proxy = await TcpFaultProxy.start(DATABASE_URL);
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbe-shutdown-'));
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATA_DIR: dataDir,
      PORT: '0',
      DATABASE_URL: proxy.urlFor(DATABASE_URL),
      DATABASE_SCHEMA: schema,
      ADMIN_TOKEN: 'shutdown-admin-token-0123456789abcdef',
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      SETTLEMENT_DRAIN_TIMEOUT_MS: String(SETTLEMENT_DRAIN_TIMEOUT_MS),
      MOCK_LATENCY_MS: '400',
      MOCK_CHUNK_DELAY_MS: '10',
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

  after(async () => {
    if (child && child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
    await proxy?.close();
    const knex = knexFactory({ client: 'pg', connection: DATABASE_URL, pool: { min: 0, max: 1 } });
    await knex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]).finally(() => knex.destroy());
  });

  it('exits within the bound, every unstored settlement logged with its content; idle keep-alive closed, in-flight responses Connection: close', async () => {
    const running = child as ChildProcess;
    await waitFor('the gateway to listen', () => /listening on http:\/\/\S+/.test(stderr) || running.exitCode !== null, 30_000);
    const base = new URL((/listening on (http:\/\/\S+)/.exec(stderr) as RegExpExecArray)[1] as string);
    const key = /alice\s+(sk-\S+)/.exec(stderr)?.[1] as string;
    const chatUrl = new URL('/v1/chat/completions', base);
    const prompt = [{ role: 'user', content: 'a long answer, please' }];

    // A keep-alive connection that served one request and is idle when SIGTERM comes.
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    await send(chatUrl, key, { model: 'gpt-4o-mini', max_tokens: 5, messages: prompt }, keepAlive);
    let idleClosedAtMs: number | undefined;
    const [idleSocket] = Object.values(keepAlive.freeSockets).flat();
    expect(idleSocket, 'an idle keep-alive socket').to.not.equal(undefined);
    idleSocket!.once('close', () => {
      idleClosedAtMs = Date.now();
    });

    // Streams relaying when PostgreSQL goes away, and a JSON request waiting on the upstream.
    let started = 0;
    const streams = Array.from({ length: STREAMS }, () =>
      send(chatUrl, key, { model: 'gpt-4o-mini', stream: true, max_tokens: 150, messages: prompt }, false, () => void started++),
    );
    await waitFor('every stream to start', () => started === STREAMS, 10_000);
    const jsonAgent = new http.Agent({ keepAlive: true });
    const json = send(chatUrl, key, { model: 'gpt-4o-mini', max_tokens: 20, messages: prompt }, jsonAgent);
    await sleep(100);
    await proxy.cut();
    const exited = new Promise<number | null>((resolve) => running.once('exit', (code) => resolve(code)));
    const signalledAtMs = Date.now();
    running.kill('SIGTERM');

    const replies = await Promise.all(streams);
    const jsonReply = await json;
    const code = await exited;
    const exitMs = Date.now() - signalledAtMs;
    keepAlive.destroy();
    jsonAgent.destroy();

    const lines = stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const unstored = lines.filter((line) => line.msg === 'billing settlement could not be stored before shutdown');
    const ids = [...replies.map((r) => /"id":"(chatcmpl-[^"]+)"/.exec(r.text)?.[1]), JSON.parse(jsonReply.text).id as string];
    report(
      `exit ${code} after ${exitMs} ms (bound ${SHUTDOWN_TIMEOUT_MS} + ${SETTLEMENT_DRAIN_TIMEOUT_MS} ms); idle keep-alive closed after ${idleClosedAtMs === undefined ? 'never' : `${idleClosedAtMs - signalledAtMs} ms`}; ` +
        `${unstored.length} unstored settlements logged for ${ids.length} requests`,
    );

    expect(code).to.equal(0);
    expect(exitMs).to.be.below(SHUTDOWN_TIMEOUT_MS + SETTLEMENT_DRAIN_TIMEOUT_MS + 2000);
    expect(idleClosedAtMs, 'the idle keep-alive connection was closed').to.not.equal(undefined);
    expect(idleClosedAtMs! - signalledAtMs).to.be.below(1000);
    for (const reply of replies) expect(reply.text.trimEnd().endsWith('data: [DONE]'), 'the stream finished').to.equal(true);
    expect(jsonReply.status).to.equal(200);
    expect(jsonReply.headers.connection).to.equal('close');
    // Every request of the cut is in the log with what settle() would have stored.
    for (const id of ids) {
      const entry = unstored.find((line) => (line.settlement as { requestId?: string }).requestId === id);
      expect(entry, `settlement ${id} in the log`).to.not.equal(undefined);
      expect(entry!.settlement).to.include({ userId: 'alice', apiKeyId: 'alice-key', mode: 'balance', platform: 'openai', model: 'gpt-4o-mini', charge: true });
      expect((entry!.settlement as { costUsd: string }).costUsd).to.match(/^0\.\d{8}$/);
      expect((entry!.settlement as { outputTokens: number }).outputTokens).to.be.a('number');
    }
    expect(stdout).to.include('"msg":"shutdown complete"');
  });
});

// The fault proxy itself, against a local echo server: pass, cut, black-hole, latency and restore do
// what the faults suites rely on.
import { expect } from 'chai';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { TcpFaultProxy } from '../helpers/tcp-proxy.js';

/** A connected client that collects what comes back and notices when it is closed. */
async function connect(port: number): Promise<{ socket: net.Socket; received: () => string; closed: () => boolean }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  let data = '';
  let closed = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (data += chunk));
  socket.on('error', () => {});
  socket.on('close', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => data, closed: () => closed };
}

function refusedOrReset(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    socket.on('close', () => resolve('closed'));
  });
}

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('faults: the TCP fault proxy', () => {
  let echo: net.Server;
  let proxy: TcpFaultProxy;

  beforeEach(async () => {
    echo = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    proxy = await TcpFaultProxy.start({ host: '127.0.0.1', port: (echo.address() as AddressInfo).port });
  });

  afterEach(async () => {
    await proxy.close();
    await new Promise((resolve) => echo.close(resolve));
  });

  it('passes bytes both ways and rewrites service URLs to itself', async () => {
    const client = await connect(proxy.port);
    client.socket.write('ping');
    await until(() => client.received() === 'ping');
    expect(proxy.open).to.equal(1);
    expect(proxy.urlFor('redis://10.0.0.9:6380/2')).to.equal(`redis://127.0.0.1:${proxy.port}/2`);
    client.socket.destroy();
  });

  it('cut: drops open connections and refuses new ones; restore listens again on the same port', async () => {
    const client = await connect(proxy.port);
    const port = proxy.port;
    await proxy.cut();
    await until(client.closed);
    expect(await refusedOrReset(port)).to.equal('ECONNREFUSED');
    await proxy.restore();
    expect(proxy.port).to.equal(port);
    const again = await connect(port);
    again.socket.write('back');
    await until(() => again.received() === 'back');
    again.socket.destroy();
  });

  it('blackhole: accepts and reads but never answers, old or new connections; restore drops them', async () => {
    const before = await connect(proxy.port);
    await proxy.blackhole();
    const during = await connect(proxy.port);
    before.socket.write('lost-1');
    during.socket.write('lost-2');
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(before.received() + during.received()).to.equal('');
    expect(before.closed() || during.closed()).to.equal(false);
    await proxy.restore();
    await until(() => before.closed() && during.closed());
    const after = await connect(proxy.port);
    after.socket.write('fine');
    await until(() => after.received() === 'fine');
    after.socket.destroy();
  });

  it('latency: every answer arrives at least that much later, in order', async () => {
    const client = await connect(proxy.port);
    await proxy.latency(120);
    const started = Date.now();
    client.socket.write('a');
    await new Promise((resolve) => setTimeout(resolve, 20));
    client.socket.write('b');
    await until(() => client.received() === 'ab');
    expect(Date.now() - started).to.be.at.least(120 + 20 - 5);
    await proxy.restore();
    client.socket.write('c');
    await until(() => client.received() === 'abc');
    client.socket.destroy();
  });
});

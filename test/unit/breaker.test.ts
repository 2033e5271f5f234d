// Unit tests for lib/breaker.ts: every state transition of docs/behaviour.md#circuit-breaker on a fake clock.
import { expect } from 'chai';
import { ManualClock } from '../../lib/clock.js';
import { CircuitBreaker, type BreakerState, type CircuitBreakerOptions } from '../../lib/breaker.js';
import { BillingConfigError } from '../../lib/options.js';
import type { BillingLogger } from '../../lib/types.js';

interface Line {
  level: string;
  obj: object;
  msg: string | undefined;
}

function setup(options?: CircuitBreakerOptions) {
  const clock = new ManualClock(1_000_000);
  const lines: Line[] = [];
  const record = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  const logger: BillingLogger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') };
  const changes: [BreakerState, BreakerState][] = [];
  const breaker = new CircuitBreaker(options, {
    clock,
    logger,
    onStateChange: (from, to) => void changes.push([from, to]),
  });
  const advance = (ms: number) => clock.advance(ms);
  const fail = (n: number) => {
    for (let i = 0; i < n; i++) breaker.recordFailure();
  };
  return { breaker, lines, changes, advance, fail };
}

describe('CircuitBreaker', () => {
  it('uses the documented defaults', () => {
    const { breaker } = setup(undefined);
    expect(breaker.options).to.deep.equal({ enabled: true, failureThreshold: 5, resetTimeoutMs: 30_000, halfOpenRequests: 3 });
    expect(breaker.state).to.equal('closed');
    expect(breaker.allow()).to.equal(true);
  });

  it('opens when consecutive failures reach the threshold, and then rejects', () => {
    const { breaker, fail, changes } = setup();
    fail(4);
    expect(breaker.state).to.equal('closed');
    expect(breaker.allow()).to.equal(true);
    fail(1);
    expect(breaker.state).to.equal('open');
    expect(breaker.allow()).to.equal(false);
    expect(changes).to.deep.equal([['closed', 'open']]);
  });

  it('a success in closed clears the failure count', () => {
    const { breaker, fail } = setup();
    fail(4);
    breaker.recordSuccess();
    fail(4);
    expect(breaker.state).to.equal('closed');
    fail(1);
    expect(breaker.state).to.equal('open');
  });

  it('stays open until the reset timeout has passed, then turns half-open', () => {
    const { breaker, fail, advance, changes } = setup();
    fail(5);
    advance(29_999);
    expect(breaker.allow()).to.equal(false);
    expect(breaker.state).to.equal('open');
    advance(1);
    expect(breaker.state).to.equal('half-open');
    expect(changes).to.deep.equal([
      ['closed', 'open'],
      ['open', 'half-open'],
    ]);
  });

  it('half-open lets exactly halfOpenRequests probes through, then rejects', () => {
    const { breaker, fail, advance } = setup();
    fail(5);
    advance(30_000);
    expect([breaker.allow(), breaker.allow(), breaker.allow()]).to.deep.equal([true, true, true]);
    expect(breaker.allow()).to.equal(false);
    expect(breaker.allow()).to.equal(false);
    expect(breaker.state).to.equal('half-open');
  });

  it('a failure in half-open re-opens at once and restarts the timeout', () => {
    const { breaker, fail, advance, changes } = setup();
    fail(5);
    advance(30_000);
    expect(breaker.allow()).to.equal(true);
    breaker.recordFailure();
    expect(breaker.state).to.equal('open');
    expect(breaker.allow()).to.equal(false);
    advance(29_999);
    expect(breaker.allow()).to.equal(false);
    advance(1);
    expect(breaker.allow()).to.equal(true);
    expect(changes.map(([, to]) => to)).to.deep.equal(['open', 'half-open', 'open', 'half-open']);
  });

  it('a success in half-open closes and clears the count', () => {
    const { breaker, fail, advance } = setup();
    fail(5);
    advance(30_000);
    expect(breaker.allow()).to.equal(true);
    breaker.recordSuccess();
    expect(breaker.state).to.equal('closed');
    expect(breaker.allow()).to.equal(true);
    fail(4);
    expect(breaker.state).to.equal('closed');
  });

  it('ignores late reports while open: a success does not close, a failure does not extend the timeout', () => {
    const { breaker, fail, advance } = setup();
    fail(5);
    advance(20_000);
    breaker.recordSuccess();
    expect(breaker.state).to.equal('open');
    breaker.recordFailure();
    advance(10_000);
    expect(breaker.state).to.equal('half-open');
  });

  it('a spent half-open round without any verdict starts a new round after another reset timeout', () => {
    const { breaker, fail, advance } = setup({ halfOpenRequests: 1 });
    fail(5);
    advance(30_000);
    expect(breaker.allow()).to.equal(true);
    advance(29_999);
    expect(breaker.allow()).to.equal(false);
    advance(1);
    expect(breaker.allow()).to.equal(true);
    expect(breaker.allow()).to.equal(false);
  });

  it('logs only real state changes: warn on open, info on half-open and closed', () => {
    const { breaker, fail, advance, lines } = setup({ failureThreshold: 2 });
    breaker.recordSuccess();
    fail(1);
    expect(lines).to.have.length(0);
    fail(3);
    expect(breaker.state).to.equal('open');
    advance(30_000);
    void breaker.state;
    void breaker.state;
    breaker.allow();
    breaker.recordSuccess();
    breaker.recordSuccess();
    expect(lines.map((l) => [l.level, l.msg])).to.deep.equal([
      ['warn', 'billing circuit breaker opened'],
      ['info', 'billing circuit breaker half-open'],
      ['info', 'billing circuit breaker closed'],
    ]);
    expect(lines[0]?.obj).to.include({ from: 'closed', to: 'open' });
  });

  it('a throwing onStateChange hook is logged and does not break the caller', () => {
    const lines: string[] = [];
    const logger: BillingLogger = { debug() {}, info() {}, warn() {}, error: (_obj, msg) => void lines.push(String(msg)) };
    const breaker = new CircuitBreaker(
      { failureThreshold: 1 },
      {
        clock: { now: () => 0 },
        logger,
        onStateChange: () => {
          throw new Error('metrics down');
        },
      },
    );
    expect(() => breaker.recordFailure()).to.not.throw();
    expect(breaker.state).to.equal('open');
    expect(lines).to.deep.equal(['circuit breaker onStateChange hook threw']);
  });

  it('disabled: always allows, ignores failures, reports closed', () => {
    const { breaker, fail, changes, lines } = setup({ enabled: false });
    fail(100);
    expect(breaker.allow()).to.equal(true);
    expect(breaker.state).to.equal('closed');
    expect(changes).to.have.length(0);
    expect(lines).to.have.length(0);
  });

  it('rejects bad options naming circuitBreaker.<option>', () => {
    expect(() => setup({ failureThreshold: 0 })).to.throw(BillingConfigError, 'circuitBreaker.failureThreshold must be a positive integer, got 0');
    expect(() => setup({ resetTimeoutMs: 1.5 })).to.throw(BillingConfigError, 'circuitBreaker.resetTimeoutMs');
    expect(() => setup({ halfOpenRequests: -1 })).to.throw(BillingConfigError, 'circuitBreaker.halfOpenRequests');
    expect(() => setup({ enabled: 'yes' } as unknown as CircuitBreakerOptions)).to.throw(BillingConfigError, 'circuitBreaker.enabled');
    expect(() => setup({ threshold: 3 } as unknown as CircuitBreakerOptions)).to.throw(BillingConfigError, 'Unknown option circuitBreaker.threshold');
  });
});

// Per-process circuit breaker over the billing reads (docs/behaviour.md#circuit-breaker): closed → open → half-open → closed.
import { parseOptions, v } from './options.js';
import type { BillingLogger, Clock } from './types.js';

export interface CircuitBreakerOptions {
  /** Default true. A disabled breaker allows everything and ignores reports. */
  enabled?: boolean;
  /** Consecutive failures (not interrupted by a success) that open the breaker. Default 5. */
  failureThreshold?: number;
  /** How long the breaker stays open before probing, in ms. Default 30000. */
  resetTimeoutMs?: number;
  /** Probe requests let through per half-open round. Default 3. */
  halfOpenRequests?: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export const CIRCUIT_BREAKER_DEFAULTS: Readonly<Required<CircuitBreakerOptions>> = Object.freeze({
  enabled: true,
  failureThreshold: 5,
  resetTimeoutMs: 30_000,
  halfOpenRequests: 3,
});

export interface CircuitBreakerDeps {
  clock: Clock;
  logger: BillingLogger;
  onStateChange?: (from: BreakerState, to: BreakerState) => void;
}

export class CircuitBreaker {
  readonly options: Readonly<Required<CircuitBreakerOptions>>;
  readonly #deps: CircuitBreakerDeps;
  #state: BreakerState = 'closed';
  #failures = 0;
  /** When the breaker last opened, or when the current half-open round began. */
  #sinceMs = 0;
  #probesLeft = 0;

  constructor(options: CircuitBreakerOptions | undefined, deps: CircuitBreakerDeps) {
    this.options = parseOptions<Required<CircuitBreakerOptions>>('circuitBreaker', options, CIRCUIT_BREAKER_DEFAULTS, {
      enabled: v.boolean(),
      failureThreshold: v.positiveInt(),
      resetTimeoutMs: v.positiveInt(),
      halfOpenRequests: v.positiveInt(),
    });
    this.#deps = deps;
  }

  /** The current state; an open breaker whose reset timeout has passed reads as half-open. */
  get state(): BreakerState {
    if (!this.options.enabled) return 'closed';
    this.#refresh();
    return this.#state;
  }

  /** May a request proceed? In half-open this consumes one probe of the round's budget. */
  allow(): boolean {
    if (!this.options.enabled) return true;
    this.#refresh();
    if (this.#state === 'closed') return true;
    if (this.#state === 'open' || this.#probesLeft === 0) return false;
    this.#probesLeft--;
    return true;
  }

  recordSuccess(): void {
    if (!this.options.enabled) return;
    this.#refresh();
    // While open (before the timeout) a success comes from a request admitted before the breaker
    // opened; it says nothing about the backend now, so only probes may close the breaker.
    if (this.#state === 'open') return;
    this.#failures = 0;
    if (this.#state === 'half-open') this.#transition('closed');
  }

  recordFailure(): void {
    if (!this.options.enabled) return;
    this.#refresh();
    if (this.#state === 'closed') {
      this.#failures++;
      if (this.#failures >= this.options.failureThreshold) this.#open();
    } else if (this.#state === 'half-open') {
      this.#open();
    }
    // Open: a late failure of a request admitted earlier must not extend the timeout.
  }

  #open(): void {
    this.#sinceMs = this.#deps.clock.now();
    this.#probesLeft = 0;
    this.#transition('open');
  }

  /** Lazy time-driven transitions, so no timer is needed. */
  #refresh(): void {
    if (this.#state === 'closed') return;
    const now = this.#deps.clock.now();
    if (now - this.#sinceMs < this.options.resetTimeoutMs) return;
    if (this.#state === 'open') {
      this.#startProbeRound(now);
      this.#transition('half-open');
    } else if (this.#probesLeft === 0) {
      // A spent round with no verdict for a whole reset timeout (probes that reported neither
      // success nor failure, e.g. cancelled requests): start a new round rather than stay stuck.
      this.#startProbeRound(now);
    }
  }

  #startProbeRound(now: number): void {
    this.#sinceMs = now;
    this.#probesLeft = this.options.halfOpenRequests;
  }

  #transition(to: BreakerState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    if (to === 'closed') this.#failures = 0;
    const fields = { breaker: 'billing', from, to, failures: this.#failures };
    if (to === 'open') this.#deps.logger.warn(fields, 'billing circuit breaker opened');
    else this.#deps.logger.info(fields, `billing circuit breaker ${to}`);
    try {
      this.#deps.onStateChange?.(from, to);
    } catch (err) {
      // A metrics hook must never break the request that happened to trigger the transition.
      this.#deps.logger.error({ breaker: 'billing', err }, 'circuit breaker onStateChange hook threw');
    }
  }
}

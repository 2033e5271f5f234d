// The one billing error class and its catalogue of stable codes, statuses and client-safe texts (docs/behaviour.md#errors-and-responses).

export type BillingErrorCode =
  | 'BILLING_SERVICE_ERROR'
  | 'BILLING_SUBJECT_NOT_FOUND'
  | 'INSUFFICIENT_BALANCE'
  | 'SUBSCRIPTION_INVALID'
  | 'DAILY_LIMIT_EXCEEDED'
  | 'WEEKLY_LIMIT_EXCEEDED'
  | 'MONTHLY_LIMIT_EXCEEDED'
  | 'USER_PLATFORM_DAILY_QUOTA_EXHAUSTED'
  | 'USER_PLATFORM_WEEKLY_QUOTA_EXHAUSTED'
  | 'USER_PLATFORM_MONTHLY_QUOTA_EXHAUSTED'
  | 'API_KEY_RATE_5H_EXCEEDED'
  | 'API_KEY_RATE_1D_EXCEEDED'
  | 'API_KEY_RATE_7D_EXCEEDED'
  | 'GROUP_RPM_EXCEEDED'
  | 'USER_RPM_EXCEEDED'
  | 'CONCURRENCY_LIMIT_EXCEEDED'
  | 'SETTLEMENT_CONFLICT'
  | 'INVALID_SUBJECT';

export interface BillingErrorInfo {
  /** HTTP status. */
  readonly status: number;
  /** Short client-safe text; the only text ever sent for a status ≥ 500. */
  readonly message: string;
  /** OpenAI-style error type. */
  readonly type: string;
  /** Whether the same request may succeed later (drives Retry-After vs x-should-retry). */
  readonly retryable: boolean;
}

const rateLimit = (message: string): BillingErrorInfo => ({ status: 429, message, type: 'rate_limit_error', retryable: true });
const denial = (status: number, type: string, message: string): BillingErrorInfo => ({ status, message, type, retryable: false });

export const BILLING_ERROR_CATALOGUE: Readonly<Record<BillingErrorCode, BillingErrorInfo>> = Object.freeze({
  BILLING_SERVICE_ERROR: {
    status: 503,
    message: 'Billing service temporarily unavailable. Please retry later.',
    type: 'api_error',
    retryable: true,
  },
  BILLING_SUBJECT_NOT_FOUND: denial(403, 'permission_error', 'No billing account exists for this user.'),
  INSUFFICIENT_BALANCE: denial(403, 'insufficient_quota', 'Insufficient balance. Please top up your account to continue.'),
  SUBSCRIPTION_INVALID: denial(403, 'permission_error', 'No active subscription for this group: it has expired or been revoked.'),
  DAILY_LIMIT_EXCEEDED: rateLimit('Daily subscription spending limit reached.'),
  WEEKLY_LIMIT_EXCEEDED: rateLimit('Weekly subscription spending limit reached.'),
  MONTHLY_LIMIT_EXCEEDED: rateLimit('Monthly subscription spending limit reached.'),
  USER_PLATFORM_DAILY_QUOTA_EXHAUSTED: rateLimit('Daily usage quota for this platform exhausted.'),
  USER_PLATFORM_WEEKLY_QUOTA_EXHAUSTED: rateLimit('Weekly usage quota for this platform exhausted.'),
  USER_PLATFORM_MONTHLY_QUOTA_EXHAUSTED: rateLimit('Monthly usage quota for this platform exhausted.'),
  API_KEY_RATE_5H_EXCEEDED: rateLimit('API key 5-hour spending limit reached.'),
  API_KEY_RATE_1D_EXCEEDED: rateLimit('API key daily spending limit reached.'),
  API_KEY_RATE_7D_EXCEEDED: rateLimit('API key 7-day spending limit reached.'),
  GROUP_RPM_EXCEEDED: rateLimit('Too many requests per minute for this group. Please slow down.'),
  USER_RPM_EXCEEDED: rateLimit('Too many requests per minute. Please slow down.'),
  CONCURRENCY_LIMIT_EXCEEDED: rateLimit('Too many requests in flight at once. Retry when one has finished.'),
  SETTLEMENT_CONFLICT: denial(409, 'conflict_error', 'This request id was already settled with different content.'),
  INVALID_SUBJECT: denial(400, 'invalid_request_error', 'Invalid billing subject for this request.'),
});

/**
 * Retry-After for a 429 whose reset time is unknown (docs/behaviour.md#errors-and-responses), so that every
 * retryable 429 carries the header clients back off on.
 */
export const DEFAULT_RETRY_AFTER_SEC = 60;

/**
 * Beyond this wait a 429 also says `x-should-retry: false`: the official OpenAI and Anthropic SDKs
 * retry a 429 twice, either sleeping the whole Retry-After (current versions: hours, for a window
 * exhausted until midnight) or ignoring one above 60 s and retrying at once (older ones); told not
 * to retry, both stop after one request (docs/money-and-limits.md, "Retry hints").
 */
export const SDK_RETRY_AFTER_LIMIT_SEC = 60;

// A brand instead of instanceof alone: two copies of the package (or a bundler duplicate) must
// still recognise each other's errors.
const BRAND = Symbol.for('koa-billing-eligibility.BillingError');

export interface BillingErrorOptions {
  /** Client-visible text replacing the catalogue's (statuses < 500 only; 5xx always use the catalogue's). */
  message?: string;
  /** Seconds until a retry can succeed; rounded up to a whole number ≥ 1. */
  retryAfter?: number;
  /** Machine-readable details for decisions, logs and custom renderers (e.g. windowResetsAt). */
  metadata?: Record<string, unknown>;
  /** The internal failure, kept for logs; never rendered. */
  cause?: unknown;
}

function wholeSeconds(value: number | undefined): number | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return undefined;
  return value < 1 ? 1 : Math.ceil(value);
}

export class BillingError extends Error {
  override readonly name = 'BillingError';
  readonly code: BillingErrorCode;
  readonly status: number;
  /** Koa sends the message of exposed errors only: true below 500. */
  readonly expose: boolean;
  /** Integer seconds ≥ 1; always set on 429s. */
  readonly retryAfter?: number;
  readonly metadata?: Readonly<Record<string, unknown>>;
  /** Koa copies `err.headers` onto the response; Koa's default handler drops headers set before a throw. */
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: BillingErrorCode, options: BillingErrorOptions = {}) {
    const info = Object.hasOwn(BILLING_ERROR_CATALOGUE, code) ? BILLING_ERROR_CATALOGUE[code] : undefined;
    if (info === undefined) throw new TypeError(`unknown billing error code ${JSON.stringify(String(code))}`);
    super(options.message ?? info.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = info.status;
    this.expose = info.status < 500;
    const retryAfter = wholeSeconds(options.retryAfter) ?? (info.status === 429 ? DEFAULT_RETRY_AFTER_SEC : undefined);
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
    if (options.metadata !== undefined) this.metadata = Object.freeze({ ...options.metadata });
    const headers: Record<string, string> = {};
    if (!info.retryable) headers['x-should-retry'] = 'false';
    else if (retryAfter !== undefined) {
      headers['Retry-After'] = String(retryAfter);
      if (retryAfter > SDK_RETRY_AFTER_LIMIT_SEC) headers['x-should-retry'] = 'false';
    }
    this.headers = Object.freeze(headers);
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** True for a BillingError, also one created by another copy of this package. */
  static is(value: unknown): value is BillingError {
    return value instanceof BillingError || (value instanceof Error && (value as unknown as Record<symbol, unknown>)[BRAND] === true);
  }
}

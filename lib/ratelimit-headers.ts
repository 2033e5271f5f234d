// IETF RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers-11) built from the checks' records.
import type { CheckEvaluation } from './decisions.js';
import { DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, WEEK_MS } from './windows.js';

/**
 * The `qu` (quota unit) of USD policies. The draft's default unit is "requests", so a USD policy
 * without `qu` would tell clients they have millions of requests left; this value says what `q`
 * and `r` count instead. It is not (yet) in the draft's quota-unit registry, whose initial
 * entries are request counts, content bytes and concurrent requests only.
 */
export const USD_QUOTA_UNIT = 'usd-micros';
/** 1e-8 USD units (lib/money.ts) per quota unit: USD policies count micro-dollars. */
export const MONEY_UNITS_PER_QUOTA_UNIT = 100n;
const UNITS_PER_QUOTA = Number(MONEY_UNITS_PER_QUOTA_UNIT);

/** The two response fields; both are structured-field Lists (RFC 9651). */
export interface RateLimitHeaderFields {
  'RateLimit-Policy': string;
  RateLimit: string;
}

/**
 * Structured-field Integers have at most 15 digits (RFC 9651 §3.3.1). Micro-dollars stay below it
 * for every amount lib/money.ts accepts (≤ 2⁵³−1 units ≈ 9.0e13 micro-dollars); 1e-8 units would not.
 */
const SF_INTEGER_MAX = 999_999_999_999_999;

interface PolicyDef {
  /** Bit for de-duplication within one response. */
  readonly bit: number;
  readonly usd: boolean;
  /** `"name";q=` */
  readonly policyHead: string;
  /** `;w=…` (and `;qu=…` for USD), after q. */
  readonly policyTail: string;
  /** `"name";r=` */
  readonly limitHead: string;
  /** Cap on `t`, or 0 for none. */
  readonly maxResetSec: number;
  /**
   * The last amounts this policy was built from and what they gave (`part` = `"name";r=<remaining>`,
   * null when the window was left out; `serial` counts the rebuilds): most windows report the same
   * limit and usage on request after request, and then neither the conversions nor the digits are redone.
   */
  readonly last: { limit: bigint | number | null; usage: bigint | number; quota: number; part: string | null; serial: number };
}

let nextBit = 1;
function policy(name: string, windowMs: number, usd: boolean, maxResetSec = 0): PolicyDef {
  const bit = nextBit;
  nextBit *= 2;
  const w = `;w=${windowMs / SECOND_MS}`;
  // Parameter order as in the draft's examples: q, then qu, then w.
  return {
    bit, usd, policyHead: `"${name}";q=`, policyTail: usd ? `;qu="${USD_QUOTA_UNIT}"${w}` : w, limitHead: `"${name}";r=`, maxResetSec,
    last: { limit: null, usage: 0, quota: 0, part: null, serial: 0 },
  };
}

/**
 * One named policy per RPM cap and per spend window, keyed by check and then by the window name
 * that check reports. The balance check is absent: a balance is a stock, not a quota over a window.
 * `w` is the window's nominal length; calendar windows (days, weeks) are that long except across
 * a DST change, which `t` (computed from the real reset time) reflects.
 */
const POLICIES: ReadonlyMap<string, ReadonlyMap<string, PolicyDef>> = new Map([
  // RPM buckets end on the cache's clock (Redis TIME), nowMs is the process clock: cap t at the
  // bucket length so clock skew cannot advertise a wait longer than one bucket.
  ['rpm', new Map([['group', policy('rpm-group', MINUTE_MS, false, 60)], ['user', policy('rpm-user', MINUTE_MS, false, 60)]])],
  ['apiKeyWindows', new Map([
    ['5h', policy('key-5h', 5 * HOUR_MS, true)],
    ['1d', policy('key-1d', DAY_MS, true)],
    ['7d', policy('key-7d', WEEK_MS, true)],
  ])],
  ['platformQuota', new Map([
    ['daily', policy('quota-daily', DAY_MS, true)],
    ['weekly', policy('quota-weekly', WEEK_MS, true)],
    ['monthly', policy('quota-monthly', 30 * DAY_MS, true)],
  ])],
  ['subscription', new Map([
    ['daily', policy('sub-daily', DAY_MS, true)],
    ['weekly', policy('sub-weekly', WEEK_MS, true)],
    ['monthly', policy('sub-monthly', 30 * DAY_MS, true)],
  ])],
]);

/** a / b rounded toward minus infinity, exactly, for safe integers a and positive b. */
function floorDiv(a: number, b: number): number {
  const r = a % b;
  return (a - r) / b - (r < 0 ? 1 : 0);
}

/**
 * The RateLimit-Policy and RateLimit fields for one response: one named policy per RPM cap and
 * per spend window that has a limit, in check order, whatever the check's outcome (a denied
 * window shows `r=0`). `q` = the limit, `r` = what is left (0..q; amounts rounded down, so a
 * client never plans on more than it has), `t` = whole seconds until the window resets (rounded
 * up, like Retry-After, so Retry-After is never earlier than the end of the denying window's
 * `t`), `w` = window length in seconds. No partition key is sent: it would identify the user.
 * Returns null when no window with a limit was reported. Pure; nowMs is epoch milliseconds.
 */
export function buildRateLimitHeaders(
  records: readonly CheckEvaluation[],
  nowMs: number,
): RateLimitHeaderFields | null {
  if (!Number.isFinite(nowMs)) throw new TypeError(`buildRateLimitHeaders: nowMs must be a finite epoch time in ms, got ${String(nowMs)}`);
  let limits = '';
  let seen = 0;
  // The policies sent, as (definition, quota) pairs; the Policy field is built from them only when they differ from the last call's.
  const defs: PolicyDef[] = [];
  const quotas: number[] = [];
  // Whether every member so far equals the last call's: then `limits` is that call's text up to here, not concatenated anew.
  let sameSoFar = true;
  for (const record of records) {
    const windows = record.windows;
    if (windows === undefined || windows.length === 0) continue;
    const byWindow = POLICIES.get(record.check);
    if (byWindow === undefined) continue;
    for (const report of windows) {
      if (report.limit === null) continue;
      const def = byWindow.get(report.window);
      if (def === undefined || (seen & def.bit) !== 0) continue;
      const amounts = amountsOf(def, report.limit, report.usage);
      if (amounts.part === null) continue;
      seen |= def.bit;
      const index = defs.length;
      defs.push(def);
      quotas.push(amounts.quota);
      // t is OPTIONAL in the draft: an unknown reset time is left out rather than guessed (NO_RESET).
      let t = NO_RESET;
      if (report.resetsAtMs !== null && Number.isFinite(report.resetsAtMs)) {
        t = Math.ceil((report.resetsAtMs - nowMs) / SECOND_MS);
        if (t < 0) t = 0;
        else if (def.maxResetSec !== 0 && t > def.maxResetSec) t = def.maxResetSec;
      }
      const last = lastLimits;
      // Compared by policy and serial, not by text: a part rebuilt from new amounts is a new, unflattened string.
      if (sameSoFar && index < last.count && last.defs[index] === def && last.serials[index] === amounts.serial && last.resets[index] === t) {
        limits = last.prefixes[index]!;
        continue;
      }
      sameSoFar = false;
      if (limits !== '') limits += ', ';
      limits += amounts.part;
      if (t !== NO_RESET) limits += `;t=${t}`;
      last.defs[index] = def;
      last.serials[index] = amounts.serial;
      last.resets[index] = t;
      last.prefixes[index] = limits;
    }
  }
  lastLimits.count = defs.length;
  return defs.length === 0 ? null : { 'RateLimit-Policy': policyField(defs, quotas), RateLimit: limits };
}

/** `t` of a member without a reset time. */
const NO_RESET = -1;

/**
 * The last RateLimit value built, member by member: each member's policy and the serial of its
 * `"name";r=…` part, its `t`, and the text up to and including it. Spend windows report the same
 * remaining amount and `t` for a second at a time, and the RPM members come last, so most calls
 * rebuild only those.
 */
const lastLimits: { count: number; defs: PolicyDef[]; serials: number[]; resets: number[]; prefixes: string[] } = {
  count: 0, defs: [], serials: [], resets: [], prefixes: [],
};

/** `q` and `"name";r=<remaining>` of one window (part null: left out), reusing the last result when the amounts are the same. */
function amountsOf(def: PolicyDef, limit: bigint | number, usage: bigint | number): PolicyDef['last'] {
  const last = def.last;
  if (last.limit === limit && last.usage === usage) return last;
  last.limit = limit;
  last.usage = usage;
  last.part = null;
  last.serial++;
  // Exact: every amount lib/money.ts accepts is within ±(2⁵³−1) units, so a JS number holds it,
  // and the subtraction, % and exact division below stay exact integer arithmetic.
  const limitAmount = Number(limit);
  const used = Number(usage);
  if (!Number.isSafeInteger(limitAmount) || !Number.isSafeInteger(used) || limitAmount < 0) return last;
  // Subtract exactly, then round down once, so the client is never told of money it lacks.
  const scale = def.usd ? UNITS_PER_QUOTA : 1;
  const quota = floorDiv(limitAmount, scale);
  const left = floorDiv(limitAmount - used, scale);
  // A value that cannot be an SF Integer is left out: a malformed field is ignored whole by
  // clients (draft §7), which would hide every other policy with it.
  if (quota > SF_INTEGER_MAX) return last;
  last.quota = quota;
  last.part = def.limitHead + (left < 0 ? 0 : left > quota ? quota : left);
  return last;
}

/**
 * The last RateLimit-Policy value built and what it was built from. Limits rarely change between
 * responses, so most calls hand Node the same (already flat) string again instead of building a
 * few hundred characters anew, which Node would then flatten to validate.
 */
let lastPolicy: { defs: PolicyDef[]; quotas: number[]; field: string } = { defs: [], quotas: [], field: '' };

function policyField(defs: PolicyDef[], quotas: number[]): string {
  const last = lastPolicy;
  if (defs.length === last.defs.length && defs.every((def, i) => def === last.defs[i] && quotas[i] === last.quotas[i])) return last.field;
  const field = defs.map((def, i) => def.policyHead + quotas[i] + def.policyTail).join(', ');
  lastPolicy = { defs, quotas, field };
  return field;
}

// The response fields that tell a client what is left (docs/ratelimit-fields.md): the IETF
// RateLimit-Policy and RateLimit fields for the limits in units the draft registers (requests,
// concurrent requests), and the package's own Billing-Spend field, in the same Structured Field
// syntax and with the same parameters, for the USD windows and the balance.
import type { CheckEvaluation } from './decisions.js';
import { DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, WEEK_MS } from './windows.js';

/** 1e-8 USD units (lib/money.ts) per unit of the Billing-Spend fields: they count micro-dollars. */
export const MONEY_UNITS_PER_SPEND_UNIT = 100n;
const UNITS_PER_SPEND = Number(MONEY_UNITS_PER_SPEND_UNIT);

/** The `qu` of concurrency policies, from the draft's RateLimit Quota Units registry. */
export const CONCURRENT_REQUESTS_UNIT = 'concurrent-requests';

/** Which families of fields a response carries: `requests` (RateLimit-Policy, RateLimit) and `spend` (Billing-Spend). */
export interface RateLimitFamilies {
  requests: boolean;
  spend: boolean;
}

/** Each field is a Structured Field List (RFC 9651); a family whose policies do not apply is absent. */
export interface RateLimitHeaderFields {
  'RateLimit-Policy'?: string;
  RateLimit?: string;
  'Billing-Spend'?: string;
}

/**
 * Structured-field Integers have at most 15 digits (RFC 9651 §3.3.1). Micro-dollars stay below it
 * for every amount lib/money.ts accepts (≤ 2⁵³−1 units ≈ 9.0e13 micro-dollars); 1e-8 units would not.
 */
const SF_INTEGER_MAX = 999_999_999_999_999;

/**
 * One family's fields, and what it built last (see FamilyState). Without a policy field (null),
 * each member carries its policy's parameters itself: one field to read, and each name sent once.
 */
interface Family {
  readonly policyField: 'RateLimit-Policy' | null;
  readonly limitsField: 'RateLimit' | 'Billing-Spend';
  readonly state: FamilyState;
}

interface PolicyDef {
  /** Bit for de-duplication within one response. */
  readonly bit: number;
  readonly family: Family;
  /** Amounts are 1e-8 USD units, sent as micro-dollars. */
  readonly usd: boolean;
  /**
   * A stock, not a quota over a window (the balance): `"name";r=<amount>` only, the amount itself
   * (negative when overdrawn), with no `q`, `w` or `t`.
   */
  readonly stock: boolean;
  /** `"name";q=` */
  readonly policyHead: string;
  /** `;qu=…` and `;w=…` where they apply, after q. */
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

/**
 * What a family built for the last response, member by member: each member's policy and the
 * serial of its `"name";r=…` part, its `t`, and the text up to and including it. Spend windows
 * report the same remaining amount and `t` for a second at a time, so most calls reuse them; and
 * the policy field, which changes only with the limits, is handed to Node as the same flat string.
 */
interface FamilyState {
  count: number;
  defs: PolicyDef[];
  serials: number[];
  resets: number[];
  prefixes: string[];
  policy: { defs: PolicyDef[]; quotas: number[]; field: string };
}

function family(policyField: Family['policyField'], limitsField: Family['limitsField']): Family {
  return { policyField, limitsField, state: { count: 0, defs: [], serials: [], resets: [], prefixes: [], policy: { defs: [], quotas: [], field: '' } } };
}

const REQUESTS = family('RateLimit-Policy', 'RateLimit');
const SPEND = family(null, 'Billing-Spend');

let nextBit = 1;
function policy(name: string, of: Family, { windowMs = 0, usd = false, stock = false, unit = '', maxResetSec = 0 } = {}): PolicyDef {
  const bit = nextBit;
  nextBit *= 2;
  // Parameter order as in the draft's examples: q, then qu, then w. The draft's default unit is
  // requests, so RPM policies carry no qu.
  const policyTail = (unit === '' ? '' : `;qu="${unit}"`) + (windowMs === 0 ? '' : `;w=${windowMs / SECOND_MS}`);
  return {
    bit,
    family: of,
    usd,
    stock,
    policyHead: `"${name}";q=`,
    policyTail,
    limitHead: `"${name}";r=`,
    maxResetSec,
    last: { limit: null, usage: 0, quota: 0, part: null, serial: 0 },
  };
}

const spendWindow = (name: string, windowMs: number) => policy(name, SPEND, { windowMs, usd: true });

/**
 * One named policy per RPM cap, concurrency cap and spend window, keyed by check and then by the
 * window name that check reports. `w` is the window's nominal length; calendar windows (days,
 * weeks) are that long except across a DST change, which `t` (computed from the real reset
 * time) reflects.
 */
const POLICIES: ReadonlyMap<string, ReadonlyMap<string, PolicyDef>> = new Map([
  ['balance', new Map([['balance', policy('balance', SPEND, { usd: true, stock: true })]])],
  [
    'subscription',
    new Map([
      ['daily', spendWindow('sub-daily', DAY_MS)],
      ['weekly', spendWindow('sub-weekly', WEEK_MS)],
      ['monthly', spendWindow('sub-monthly', 30 * DAY_MS)],
    ]),
  ],
  [
    'platformQuota',
    new Map([
      ['daily', spendWindow('quota-daily', DAY_MS)],
      ['weekly', spendWindow('quota-weekly', WEEK_MS)],
      ['monthly', spendWindow('quota-monthly', 30 * DAY_MS)],
    ]),
  ],
  [
    'apiKeyWindows',
    new Map([
      ['5h', spendWindow('key-5h', 5 * HOUR_MS)],
      ['1d', spendWindow('key-1d', DAY_MS)],
      ['7d', spendWindow('key-7d', WEEK_MS)],
    ]),
  ],
  // A slot is free again when any request of the user ends, not at a time: no w, no t.
  [
    'concurrency',
    new Map([
      ['user', policy('conc-user', REQUESTS, { unit: CONCURRENT_REQUESTS_UNIT })],
      ['apiKey', policy('conc-key', REQUESTS, { unit: CONCURRENT_REQUESTS_UNIT })],
    ]),
  ],
  // RPM buckets end on the cache's clock (Redis TIME), nowMs is the process clock: cap t at the
  // bucket length so clock skew cannot advertise a wait longer than one bucket.
  [
    'rpm',
    new Map([
      ['group', policy('rpm-group', REQUESTS, { windowMs: MINUTE_MS, maxResetSec: 60 })],
      ['user', policy('rpm-user', REQUESTS, { windowMs: MINUTE_MS, maxResetSec: 60 })],
    ]),
  ],
]);

const BOTH: Readonly<RateLimitFamilies> = Object.freeze({ requests: true, spend: true });

/** a / b rounded toward minus infinity, exactly, for safe integers a and positive b. */
function floorDiv(a: number, b: number): number {
  const r = a % b;
  return (a - r) / b - (r < 0 ? 1 : 0);
}

/** One family's fields while a response is built. */
interface Building {
  limits: string;
  defs: PolicyDef[];
  quotas: number[];
  /** Whether every member so far equals the last response's: then `limits` is that text up to here. */
  sameSoFar: boolean;
}

/**
 * The fields for one response: one named member per RPM cap, concurrency cap and spend window
 * that has a limit, and the balance, in check order, whatever the check's outcome (a denied window
 * shows `r=0`). `q` = the limit, `r` = what is left (0..q; micro-dollars rounded down, so a
 * client never plans on more than it has), `t` = whole seconds until the window resets (rounded
 * up, like Retry-After, so Retry-After is never earlier than the end of the denying window's
 * `t`), `w` = window length in seconds. No partition key is sent: it would identify the user.
 * Returns null when nothing applies. Pure apart from its reuse of the last result; nowMs is
 * epoch milliseconds.
 */
export function buildRateLimitHeaders(
  records: readonly CheckEvaluation[],
  nowMs: number,
  families: Readonly<RateLimitFamilies> = BOTH,
): RateLimitHeaderFields | null {
  if (!Number.isFinite(nowMs)) throw new TypeError(`buildRateLimitHeaders: nowMs must be a finite epoch time in ms, got ${String(nowMs)}`);
  const requests: Building | null = families.requests ? { limits: '', defs: [], quotas: [], sameSoFar: true } : null;
  const spend: Building | null = families.spend ? { limits: '', defs: [], quotas: [], sameSoFar: true } : null;
  let seen = 0;
  for (const record of records) {
    const windows = record.windows;
    if (windows === undefined || windows.length === 0) continue;
    const byWindow = POLICIES.get(record.check);
    if (byWindow === undefined) continue;
    for (const report of windows) {
      const def: PolicyDef | undefined = byWindow.get(report.window);
      if (def === undefined || (seen & def.bit) !== 0) continue;
      const building: Building | null = def.family === REQUESTS ? requests : spend;
      if (building === null) continue;
      if (report.limit === null && !def.stock) continue;
      const amounts = def.stock ? stockOf(def, report.usage) : amountsOf(def, report.limit as bigint | number, report.usage);
      if (amounts.part === null) continue;
      seen |= def.bit;
      const index = building.defs.length;
      building.defs.push(def);
      building.quotas.push(amounts.quota);
      // t is OPTIONAL in the draft: an unknown reset time is left out rather than guessed (NO_RESET).
      let t = NO_RESET;
      if (!def.stock && report.resetsAtMs !== null && Number.isFinite(report.resetsAtMs)) {
        t = Math.ceil((report.resetsAtMs - nowMs) / SECOND_MS);
        if (t < 0) t = 0;
        else if (def.maxResetSec !== 0 && t > def.maxResetSec) t = def.maxResetSec;
      }
      const last = def.family.state;
      // Compared by policy and serial, not by text: a part rebuilt from new amounts is a new, unflattened string.
      if (building.sameSoFar && index < last.count && last.defs[index] === def && last.serials[index] === amounts.serial && last.resets[index] === t) {
        building.limits = last.prefixes[index]!;
        continue;
      }
      building.sameSoFar = false;
      if (building.limits !== '') building.limits += ', ';
      building.limits += amounts.part;
      if (t !== NO_RESET) building.limits += `;t=${t}`;
      last.defs[index] = def;
      last.serials[index] = amounts.serial;
      last.resets[index] = t;
      last.prefixes[index] = building.limits;
    }
  }
  let fields: RateLimitHeaderFields | null = null;
  for (const [building, of] of [
    [requests, REQUESTS],
    [spend, SPEND],
  ] as const) {
    if (building === null) continue;
    of.state.count = building.defs.length;
    if (building.defs.length === 0) continue;
    fields ??= {};
    if (of.policyField !== null) fields[of.policyField] = policyFieldOf(of.state, building.defs, building.quotas);
    fields[of.limitsField] = building.limits;
  }
  return fields;
}

/** `t` of a member without a reset time. */
const NO_RESET = -1;

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
  const scale = def.usd ? UNITS_PER_SPEND : 1;
  const quota = floorDiv(limitAmount, scale);
  const left = floorDiv(limitAmount - used, scale);
  // A value that cannot be an SF Integer is left out: a malformed field is ignored whole by
  // clients, which would hide every other member with it.
  if (quota > SF_INTEGER_MAX) return last;
  last.quota = quota;
  // A member of a family without a policy field carries q and w itself: "name";q=…;w=…;r=….
  const head = def.family.policyField === null ? `${def.policyHead}${quota}${def.policyTail};r=` : def.limitHead;
  last.part = head + Math.max(0, Math.min(left, quota));
  return last;
}

/** `"name";r=<amount>` of a stock (the balance), rounded down, reusing the last result for the same amount. */
function stockOf(def: PolicyDef, amount: bigint | number): PolicyDef['last'] {
  const last = def.last;
  if (last.usage === amount && last.limit === null && last.serial !== 0) return last;
  last.limit = null;
  last.usage = amount;
  last.part = null;
  last.serial++;
  const units = Number(amount);
  if (!Number.isSafeInteger(units)) return last;
  const value = floorDiv(units, UNITS_PER_SPEND);
  if (value > SF_INTEGER_MAX || value < -SF_INTEGER_MAX) return last;
  last.part = def.limitHead + value;
  return last;
}

/** The policy field of a family's members, the last one's string when nothing changed. */
function policyFieldOf(state: FamilyState, defs: PolicyDef[], quotas: number[]): string {
  const last = state.policy;
  if (defs.length === last.defs.length && defs.every((def, i) => def === last.defs[i] && quotas[i] === last.quotas[i])) return last.field;
  const field = defs.map((def, i) => def.policyHead + quotas[i] + def.policyTail).join(', ');
  state.policy = { defs, quotas, field };
  return field;
}

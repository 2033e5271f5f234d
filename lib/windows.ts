// Calendar and rolling usage windows in one configured IANA time zone, DST-correct (docs/behaviour.md#platform-quota, docs/behaviour.md#api-key-windows, docs/behaviour.md#windows-and-time).
import type { TimeContext } from './types.js';

export const SECOND_MS = 1_000;
export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
export const WEEK_MS = 7 * DAY_MS;

// Instants accepted by the zone functions. Intl's en-US output has no era, so years before 1000
// or after 9999 would parse ambiguously; no billing clock is ever there.
const MIN_MS = Date.UTC(1000, 0, 1);
const MAX_MS = Date.UTC(9999, 11, 30);
// Wider than any UTC offset tzdb has ever used (about ±16 h), so a search starting this far
// from a wall time is certain to bracket it.
const SEARCH_MARGIN_MS = 30 * HOUR_MS;
// The zone cache is keyed by configuration strings; the bound only guards against misuse.
const MAX_ZONES = 64;

/** A local calendar period: `[startMs, nextMs)` holds every instant whose local date is in it. */
interface Period {
  /** The local date (day, or the week's Monday) as a UTC wall-clock midnight: the cache key. */
  readonly keyWall: number;
  readonly startMs: number;
  readonly nextMs: number;
  /**
   * Same UTC offset at both ends: no transition inside, so every instant in the range belongs to
   * the period and a range test alone answers a lookup. Otherwise the lookup reads the local
   * date (DST days only, twice a year).
   */
  readonly uniform: boolean;
}

interface Zone {
  readonly name: string;
  readonly utc: boolean;
  readonly format: Intl.DateTimeFormat | null;
  // Only the last day and week are kept: requests ask about "now", which changes day rarely.
  day: Period | null;
  week: Period | null;
}

const zones = new Map<string, Zone>();
/** Zone names assertTimeZone accepted, with their canonical spelling (bounded like `zones`). */
const acceptedZones = new Map<string, string>();

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  return typeof value === 'object' && value !== null ? typeof value : String(value);
}

/**
 * Checks an IANA time zone name and returns its canonical spelling ("utc" → "UTC"). Throws a
 * TypeError naming `option` and the value otherwise. Offset strings ("+02:00") are refused: they
 * are not zone names, and only some Node versions accept them.
 */
export function assertTimeZone(timezone: string, option = 'timezone'): string {
  // The store checks the zone of every settlement; building an Intl.DateTimeFormat for it each
  // time cost more than the rest of the argument checks together (docs/benchmark.md).
  const known = typeof timezone === 'string' ? acceptedZones.get(timezone) : undefined;
  if (known !== undefined) return known;
  const invalid = (): TypeError => new TypeError(`${option} must be an IANA time zone name such as "UTC" or "Europe/Berlin", got ${show(timezone)}`);
  if (typeof timezone !== 'string' || timezone.trim() === '' || /^[+\-\u2212\d]/.test(timezone)) throw invalid();
  let canonical: string;
  try {
    canonical = new Intl.DateTimeFormat('en-US', { timeZone: timezone }).resolvedOptions().timeZone;
  } catch {
    throw invalid();
  }
  if (acceptedZones.size >= MAX_ZONES) acceptedZones.clear();
  acceptedZones.set(timezone, canonical);
  return canonical;
}

function zoneFor(timezone: string): Zone {
  const cached = zones.get(timezone);
  if (cached !== undefined) return cached;
  const name = assertTimeZone(timezone);
  const utc = name === 'UTC' || name === 'Etc/UTC' || name === 'Etc/GMT' || name === 'GMT';
  const format = utc
    ? null
    : new Intl.DateTimeFormat('en-US-u-ca-gregory-nu-latn', {
        timeZone: name,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
  if (zones.size >= MAX_ZONES) zones.clear();
  const zone: Zone = { name, utc, format, day: null, week: null };
  zones.set(timezone, zone);
  return zone;
}

function checkMs(ms: number, what: string): number {
  if (typeof ms !== 'number' || !(ms >= MIN_MS && ms <= MAX_MS)) {
    throw new TypeError(`${what} must be epoch milliseconds between the years 1000 and 9999, got ${show(ms)}`);
  }
  // Windows are whole milliseconds; flooring keeps every comparison integral (see expiryThreshold).
  return Math.floor(ms);
}

function mod(value: number, divisor: number): number {
  const r = value % divisor;
  return r < 0 ? r + divisor : r;
}

/**
 * The local wall-clock time of instant `t`, as if it were UTC (so `wall - t` is the offset).
 * Parses `format()`'s "M/D/YYYY, H:MM:SS" digit runs in place: formatToParts allocates a dozen
 * objects per call, and this runs on every uncached lookup.
 */
function wallAt(zone: Zone, t: number): number {
  if (zone.format === null) return t;
  const text = zone.format.format(t);
  let month = 0,
    day = 0,
    year = 0,
    hour = 0,
    minute = 0,
    value = 0,
    field = 0,
    inDigits = false;
  for (let i = 0; i <= text.length; i++) {
    const digit = i < text.length ? text.charCodeAt(i) - 48 : -1;
    if (digit >= 0 && digit <= 9) {
      value = value * 10 + digit;
      inDigits = true;
      continue;
    }
    if (!inDigits) continue;
    switch (field++) {
      case 0:
        month = value;
        break;
      case 1:
        day = value;
        break;
      case 2:
        year = value;
        break;
      case 3:
        hour = value;
        break;
      case 4:
        minute = value;
        break;
    }
    if (field === 6) return Date.UTC(year, month - 1, day, hour, minute, value) + mod(t, SECOND_MS);
    value = 0;
    inDigits = false;
  }
  throw new Error(`unexpected Intl date format for time zone ${zone.name}: ${JSON.stringify(text)}`);
}

/**
 * The first instant whose local wall time is at or after `wall` (a local midnight). Usually the
 * instant showing exactly that midnight — the earlier one if it occurs twice; when a forward
 * transition skips midnight, the first instant after the gap.
 */
function firstInstantAt(zone: Zone, wall: number): number {
  // The offsets a day either side are the only ones in play unless two transitions are that
  // close together; the search below covers that case.
  const earlyT = wall - DAY_MS;
  const lateT = wall + DAY_MS;
  const offsetEarly = wallAt(zone, earlyT) - earlyT;
  const offsetLate = wallAt(zone, lateT) - lateT;
  const first = wall - Math.max(offsetEarly, offsetLate);
  if (wallAt(zone, first) === wall) return first;
  const second = wall - Math.min(offsetEarly, offsetLate);
  if (second !== first && wallAt(zone, second) === wall) return second;
  // Midnight does not exist here: binary-search the first instant past it. Rare (once a year
  // in zones such as America/Santiago), so 37 steps to the millisecond are affordable.
  let lo = wall - SEARCH_MARGIN_MS;
  let hi = wall + SEARCH_MARGIN_MS;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (wallAt(zone, mid) >= wall) hi = mid;
    else lo = mid;
  }
  return hi;
}

function computePeriod(zone: Zone, keyWall: number, lengthWall: number): Period {
  const startMs = firstInstantAt(zone, keyWall);
  const nextMs = firstInstantAt(zone, keyWall + lengthWall);
  const uniform = wallAt(zone, startMs) - startMs === wallAt(zone, nextMs - 1) - (nextMs - 1);
  return { keyWall, startMs, nextMs, uniform };
}

/** The local day containing `t`, from the one-entry cache when possible. */
function dayOf(zone: Zone, t: number): Period {
  const cached = zone.day;
  if (cached?.uniform && t >= cached.startMs && t < cached.nextMs) return cached;
  const wall = wallAt(zone, t);
  const keyWall = wall - mod(wall, DAY_MS);
  if (cached !== null && cached.keyWall === keyWall) return cached;
  return (zone.day = computePeriod(zone, keyWall, DAY_MS));
}

/** The local Monday-to-Sunday week containing `t`. */
function weekOf(zone: Zone, t: number): Period {
  const cached = zone.week;
  if (cached?.uniform && t >= cached.startMs && t < cached.nextMs) return cached;
  const wall = wallAt(zone, t);
  const dayWall = wall - mod(wall, DAY_MS);
  // 1970-01-01 was a Thursday: (days since epoch + 3) mod 7 is 0 on Mondays.
  const keyWall = dayWall - mod(dayWall / DAY_MS + 3, 7) * DAY_MS;
  if (cached !== null && cached.keyWall === keyWall) return cached;
  return (zone.week = computePeriod(zone, keyWall, WEEK_MS));
}

/**
 * `period.nextMs`, but never at or before `t`: only a backward transition across local midnight
 * (historic, e.g. Alaska 1867) can revisit a date after it ended; the period then next ends
 * when the wall clock reaches its end again.
 */
function nextAfter(zone: Zone, period: Period, lengthWall: number, t: number): number {
  if (period.nextMs > t) return period.nextMs;
  return t + (period.keyWall + lengthWall - wallAt(zone, t));
}

/** Local 00:00 of the day containing `ms` (the first instant of that day if midnight is skipped). */
export function startOfDay(ms: number, timezone: string): number {
  const zone = zoneFor(timezone);
  const t = checkMs(ms, 'ms');
  if (zone.utc) return t - mod(t, DAY_MS);
  return dayOf(zone, t).startMs;
}

/** The first instant of the following local day; always after `ms`. */
export function startOfNextDay(ms: number, timezone: string): number {
  const zone = zoneFor(timezone);
  const t = checkMs(ms, 'ms');
  if (zone.utc) return t - mod(t, DAY_MS) + DAY_MS;
  return nextAfter(zone, dayOf(zone, t), DAY_MS, t);
}

/** Monday 00:00 local of the week containing `ms`. */
export function startOfWeek(ms: number, timezone: string): number {
  const zone = zoneFor(timezone);
  const t = checkMs(ms, 'ms');
  if (zone.utc) return utcWeekStart(t);
  return weekOf(zone, t).startMs;
}

/** The next Monday's first instant, local; always after `ms`. */
export function startOfNextWeek(ms: number, timezone: string): number {
  const zone = zoneFor(timezone);
  const t = checkMs(ms, 'ms');
  if (zone.utc) return utcWeekStart(t) + WEEK_MS;
  return nextAfter(zone, weekOf(zone, t), WEEK_MS, t);
}

function utcWeekStart(t: number): number {
  const dayStart = t - mod(t, DAY_MS);
  return dayStart - mod(dayStart / DAY_MS + 3, 7) * DAY_MS;
}

// ---------------------------------------------------------------------------------------------
// Window rules.

export type WindowRule =
  /** Expired once the local day changes; resets at the next local midnight. */
  | { readonly kind: 'calendarDay' }
  /** Expired once the local week (Monday 00:00) changes. */
  | { readonly kind: 'calendarWeek' }
  /**
   * Expired iff now − start ≥ lengthMs. A new window starts now; at the start of today for
   * calendar-anchored key windows unless that start would already be over; or, term-aligned
   * (subscription weeks and months), a whole number of periods after the expired window's start,
   * so a plan's periods never drift with the moments it happens to be used (docs/money-and-limits.md).
   */
  | { readonly kind: 'rolling'; readonly lengthMs: number; readonly anchor: RollingAnchor };

export type RollingAnchor = 'now' | 'startOfDay' | 'term';

/** A rolling rule; the length must be a positive whole number of milliseconds. */
export function rollingWindow(lengthMs: number, anchor: RollingAnchor): WindowRule {
  if (!Number.isSafeInteger(lengthMs) || lengthMs <= 0) {
    throw new TypeError(`lengthMs must be a positive integer number of milliseconds, got ${show(lengthMs)}`);
  }
  if (anchor !== 'now' && anchor !== 'startOfDay' && anchor !== 'term')
    throw new TypeError(`anchor must be "now", "startOfDay" or "term", got ${show(anchor)}`);
  return Object.freeze({ kind: 'rolling', lengthMs, anchor });
}

const calendarDay: WindowRule = Object.freeze({ kind: 'calendarDay' });
const calendarWeek: WindowRule = Object.freeze({ kind: 'calendarWeek' });

/** Every window of the spec, by owner and period. */
export const WINDOWS = Object.freeze({
  subscriptionDaily: calendarDay,
  subscriptionWeekly: rollingWindow(WEEK_MS, 'term'),
  subscriptionMonthly: rollingWindow(30 * DAY_MS, 'term'),
  /**
   * The daily window of a one-time daily card (see isOneTimeDailyCard): 24 h from its first use,
   * which outlasts the card, so its day's quota never resets at midnight.
   */
  subscriptionCardDaily: rollingWindow(DAY_MS, 'now'),
  quotaDaily: calendarDay,
  quotaWeekly: calendarWeek,
  quotaMonthly: rollingWindow(30 * DAY_MS, 'now'),
  key5h: rollingWindow(5 * HOUR_MS, 'now'),
  key1d: rollingWindow(DAY_MS, 'startOfDay'),
  key7d: rollingWindow(WEEK_MS, 'startOfDay'),
} satisfies Record<string, WindowRule>);

/**
 * A subscription that lasts one day or less from its start: its quota is one day's, spent once,
 * and midnight does not renew it (docs/money-and-limits.md, subscription windows).
 */
export function isOneTimeDailyCard(startsAtMs: number, expiresAtMs: number): boolean {
  return expiresAtMs - startsAtMs <= DAY_MS;
}

/** The daily window rule of a subscription with this term. */
export function subscriptionDailyRule(startsAtMs: number, expiresAtMs: number): WindowRule {
  return isOneTimeDailyCard(startsAtMs, expiresAtMs) ? WINDOWS.subscriptionCardDaily : WINDOWS.subscriptionDaily;
}

function nowOf(time: TimeContext): number {
  return checkMs(time.nowMs, 'time.nowMs');
}

function unknownRule(rule: never): never {
  throw new TypeError(`unknown window rule ${show((rule as { kind?: unknown }).kind)}`);
}

/**
 * For SQL: the window is expired iff `start IS NULL OR start < threshold`. isWindowExpired is
 * defined through this value, so the store and the process cannot disagree on any start.
 * Rolling: now − start ≥ length ⇔ start ≤ now − length ⇔ start < now − length + 1 (whole ms).
 */
export function expiryThreshold(rule: WindowRule, time: TimeContext): number {
  switch (rule.kind) {
    case 'calendarDay':
      return startOfDay(time.nowMs, time.timezone);
    case 'calendarWeek':
      return startOfWeek(time.nowMs, time.timezone);
    case 'rolling':
      return nowOf(time) - rule.lengthMs + 1;
    default:
      return unknownRule(rule);
  }
}

/** Null start (never used) is expired; so is a start before the threshold. */
export function isWindowExpired(rule: WindowRule, startMs: number | null, time: TimeContext): boolean {
  return startMs === null || startMs < expiryThreshold(rule, time);
}

/**
 * Where a window (re)started by a write at `time.nowMs` begins. `previousStartMs`: the start of the
 * window it replaces (null when none), from which a term-aligned window advances by whole periods.
 */
export function newWindowStart(rule: WindowRule, time: TimeContext, previousStartMs: number | null = null): number {
  switch (rule.kind) {
    case 'calendarDay':
      return startOfDay(time.nowMs, time.timezone);
    case 'calendarWeek':
      return startOfWeek(time.nowMs, time.timezone);
    case 'rolling': {
      const now = nowOf(time);
      if (rule.anchor === 'now') return now;
      if (rule.anchor === 'term') {
        if (previousStartMs === null || previousStartMs > now) return now;
        return previousStartMs + Math.floor((now - previousStartMs) / rule.lengthMs) * rule.lengthMs;
      }
      // On a 25-hour day a 24 h window anchored at midnight is over by 23:00 local; starting it
      // there would give a window born expired, so it starts now instead.
      const dayStart = startOfDay(now, time.timezone);
      return dayStart + rule.lengthMs > now ? dayStart : now;
    }
    default:
      return unknownRule(rule);
  }
}

/** The next reset, epoch ms, always after `time.nowMs` (never a time in the past). */
export function windowResetAt(rule: WindowRule, startMs: number | null, time: TimeContext): number {
  switch (rule.kind) {
    case 'calendarDay':
      return startOfNextDay(time.nowMs, time.timezone);
    case 'calendarWeek':
      return startOfNextWeek(time.nowMs, time.timezone);
    case 'rolling': {
      const now = nowOf(time);
      if (startMs !== null && startMs >= now - rule.lengthMs + 1) {
        const end = startMs + rule.lengthMs;
        if (end > time.nowMs) return end;
      }
      return newWindowStart(rule, time, startMs) + rule.lengthMs;
    }
    default:
      return unknownRule(rule);
  }
}

/** The usage that counts now: the stored usage, or 0 when the window has expired. */
export function effectiveUsage(rule: WindowRule, usage: bigint, startMs: number | null, time: TimeContext): bigint {
  return isWindowExpired(rule, startMs, time) ? 0n : usage;
}

/** ceil((resetAtMs − nowMs) / 1000) whole seconds, at least 1 (a Retry-After value). */
export function secondsUntil(resetAtMs: number, nowMs: number): number {
  const diff = resetAtMs - nowMs;
  if (!Number.isFinite(diff)) {
    throw new TypeError(`secondsUntil needs finite times, got resetAtMs=${show(resetAtMs)} nowMs=${show(nowMs)}`);
  }
  return diff <= SECOND_MS ? 1 : Math.ceil(diff / SECOND_MS);
}

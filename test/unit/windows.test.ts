// Unit tests for lib/windows.ts (and lib/clock.ts): local days and weeks across DST, rolling windows, thresholds, resets.
import { expect } from 'chai';
import fc from 'fast-check';
import { ManualClock, systemClock } from '../../lib/clock.js';
import {
  DAY_MS,
  HOUR_MS,
  WINDOWS,
  assertTimeZone,
  effectiveUsage,
  expiryThreshold,
  isOneTimeDailyCard,
  isWindowExpired,
  newWindowStart,
  rollingWindow,
  secondsUntil,
  subscriptionDailyRule,
  startOfDay,
  startOfNextDay,
  startOfNextWeek,
  startOfWeek,
  windowResetAt,
  type WindowRule,
} from '../../lib/windows.js';
import type { TimeContext } from '../../lib/types.js';

const at = (iso: string): number => {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`bad test date ${iso}`);
  return ms;
};
const iso = (ms: number): string => new Date(ms).toISOString();
const NY = 'America/New_York';
const RULES = Object.entries(WINDOWS) as [string, WindowRule][];

// An independent reading of the local date, for property checks against the implementation.
const dateFormats = new Map<string, Intl.DateTimeFormat>();
function localDate(ms: number, timezone: string): string {
  let format = dateFormats.get(timezone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-CA', { timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit', weekday: 'short' });
    dateFormats.set(timezone, format);
  }
  return format.format(ms);
}

describe('windows: local days', () => {
  it('UTC days are plain arithmetic', () => {
    expect(iso(startOfDay(at('2024-05-01T13:45:10.123Z'), 'UTC'))).to.equal('2024-05-01T00:00:00.000Z');
    expect(iso(startOfNextDay(at('2024-05-01T13:45:10.123Z'), 'UTC'))).to.equal('2024-05-02T00:00:00.000Z');
    expect(iso(startOfDay(at('2024-05-01T00:00:00.000Z'), 'UTC'))).to.equal('2024-05-01T00:00:00.000Z');
    expect(iso(startOfNextDay(at('2024-12-31T23:59:59.999Z'), 'UTC'))).to.equal('2025-01-01T00:00:00.000Z');
  });

  it('America/New_York spring forward: the day is 23 h and both sides of the gap belong to it', () => {
    const day = { start: at('2024-03-10T05:00:00Z'), next: at('2024-03-11T04:00:00Z') };
    for (const t of ['2024-03-10T05:00:00Z', '2024-03-10T06:59:59.999Z', '2024-03-10T07:00:00Z', '2024-03-11T03:59:59.999Z']) {
      expect(startOfDay(at(t), NY), t).to.equal(day.start);
      expect(startOfNextDay(at(t), NY), t).to.equal(day.next);
    }
    expect(day.next - day.start).to.equal(23 * HOUR_MS);
    // The days either side are ordinary 24 h days with their own offsets (EST before, EDT after).
    expect(startOfDay(at('2024-03-10T04:59:59.999Z'), NY)).to.equal(at('2024-03-09T05:00:00Z'));
    expect(startOfNextDay(at('2024-03-11T12:00:00Z'), NY) - startOfDay(at('2024-03-11T12:00:00Z'), NY)).to.equal(DAY_MS);
  });

  it('America/New_York fall back: the day is 25 h and both 01:30s belong to it', () => {
    const start = at('2024-11-03T04:00:00Z');
    const next = at('2024-11-04T05:00:00Z');
    for (const t of ['2024-11-03T05:30:00Z', '2024-11-03T06:30:00Z', '2024-11-04T04:59:59.999Z']) {
      expect(startOfDay(at(t), NY), t).to.equal(start);
      expect(startOfNextDay(at(t), NY), t).to.equal(next);
    }
    expect(next - start).to.equal(25 * HOUR_MS);
    expect(startOfDay(at('2024-11-04T05:00:00Z'), NY)).to.equal(next);
  });

  it('Asia/Shanghai days start at 16:00 UTC', () => {
    expect(iso(startOfDay(at('2024-05-01T15:59:59.999Z'), 'Asia/Shanghai'))).to.equal('2024-04-30T16:00:00.000Z');
    expect(iso(startOfDay(at('2024-05-01T16:00:00Z'), 'Asia/Shanghai'))).to.equal('2024-05-01T16:00:00.000Z');
    expect(iso(startOfNextDay(at('2024-05-01T16:00:00Z'), 'Asia/Shanghai'))).to.equal('2024-05-02T16:00:00.000Z');
  });

  it('a day whose midnight does not exist starts at its first instant (America/Santiago)', () => {
    // 2024-09-08: clocks jump from 24:00 (-04) to 01:00 (-03); the day starts at 01:00 local.
    expect(iso(startOfDay(at('2024-09-08T15:00:00Z'), 'America/Santiago'))).to.equal('2024-09-08T04:00:00.000Z');
    expect(iso(startOfNextDay(at('2024-09-07T15:00:00Z'), 'America/Santiago'))).to.equal('2024-09-08T04:00:00.000Z');
    expect(startOfDay(at('2024-09-08T03:59:59.999Z'), 'America/Santiago')).to.equal(at('2024-09-07T04:00:00Z'));
  });

  it('a day whose midnight occurs twice starts at the first one (America/Havana)', () => {
    // 2024-11-03: clocks go back from 01:00 (-04) to 00:00 (-05), so 00:00 local happens at 04:00Z and 05:00Z.
    const havana = 'America/Havana';
    expect(iso(startOfDay(at('2024-11-03T05:30:00Z'), havana))).to.equal('2024-11-03T04:00:00.000Z');
    expect(iso(startOfNextDay(at('2024-11-02T12:00:00Z'), havana))).to.equal('2024-11-03T04:00:00.000Z');
    expect(startOfNextDay(at('2024-11-03T12:00:00Z'), havana) - startOfDay(at('2024-11-03T12:00:00Z'), havana)).to.equal(25 * HOUR_MS);
  });

  it('a date that repeats (America/Juneau, October 1867) is answered the same in any lookup order', () => {
    // Alaska moved across the date line: at 1867-10-19T00:31:13Z the local date went back from the 19th to the 18th.
    const juneau = 'America/Juneau';
    const firstNineteenth = at('1867-10-19T00:00:00Z');
    const repeatedEighteenth = at('1867-10-19T01:00:00Z');
    expect(iso(startOfDay(firstNineteenth, juneau))).to.equal('1867-10-18T08:57:41.000Z');
    // The cached day (the first 19th) spans this instant, but the instant is on the 18th again.
    expect(iso(startOfDay(repeatedEighteenth, juneau))).to.equal('1867-10-17T08:57:41.000Z');
    // The 18th's first ending is in the past; the next day starts when the wall clock reaches the 19th again.
    expect(iso(startOfNextDay(repeatedEighteenth, juneau))).to.equal('1867-10-19T08:57:41.000Z');
  });

  it('start and next start bracket the local date in several zones, whatever the lookup order', () => {
    const cases: [string, string][] = [
      [NY, '2024-03-06T00:00:00Z'],
      [NY, '2024-10-30T00:00:00Z'],
      ['Europe/London', '2024-03-28T00:00:00Z'],
      ['Australia/Lord_Howe', '2024-04-04T00:00:00Z'],
      ['America/Santiago', '2024-09-05T00:00:00Z'],
      ['America/Havana', '2024-10-31T00:00:00Z'],
      ['Asia/Kolkata', '2024-01-01T00:00:00Z'],
    ];
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const [zone, from] of cases) {
      // Random order over eight days so that the one-entry caches are hit, missed and replaced.
      for (let i = 0; i < 150; i++) {
        const t = at(from) + Math.floor(random() * 8 * DAY_MS);
        const start = startOfDay(t, zone);
        const next = startOfNextDay(t, zone);
        const label = `${zone} ${iso(t)}`;
        expect(start, label).to.be.at.most(t);
        expect(next, label).to.be.above(t);
        expect(localDate(start, zone), label).to.equal(localDate(t, zone));
        expect(localDate(start - 1, zone), label).to.not.equal(localDate(t, zone));
        expect(localDate(next - 1, zone), label).to.equal(localDate(t, zone));
        expect(localDate(next, zone), label).to.not.equal(localDate(t, zone));
        const weekStart = startOfWeek(t, zone);
        expect(localDate(weekStart, zone), label).to.match(/^Mon/);
        expect(localDate(weekStart - 1, zone), label).to.match(/^Sun/);
        expect(t - weekStart, label).to.be.within(0, 7 * DAY_MS + HOUR_MS);
        expect(localDate(startOfNextWeek(t, zone), zone), label).to.match(/^Mon/);
      }
    }
  });
});

describe('windows: local weeks start on Monday', () => {
  it('UTC: Sunday 23:59 belongs to the week before, Monday 00:00 starts a new one', () => {
    expect(iso(startOfWeek(at('2024-03-17T23:59:59.999Z'), 'UTC'))).to.equal('2024-03-11T00:00:00.000Z');
    expect(iso(startOfNextWeek(at('2024-03-17T23:59:59.999Z'), 'UTC'))).to.equal('2024-03-18T00:00:00.000Z');
    expect(iso(startOfWeek(at('2024-03-18T00:00:00Z'), 'UTC'))).to.equal('2024-03-18T00:00:00.000Z');
    expect(iso(startOfWeek(at('1970-01-01T12:00:00Z'), 'UTC'))).to.equal('1969-12-29T00:00:00.000Z');
  });

  it('America/New_York: Sunday 23:59 local and Monday 00:00 local', () => {
    // Sunday 2024-03-17 23:59 EDT is 03:59 UTC on Monday.
    expect(iso(startOfWeek(at('2024-03-18T03:59:00Z'), NY))).to.equal('2024-03-11T04:00:00.000Z');
    expect(iso(startOfWeek(at('2024-03-18T04:00:00Z'), NY))).to.equal('2024-03-18T04:00:00.000Z');
    expect(iso(startOfNextWeek(at('2024-03-18T03:59:00Z'), NY))).to.equal('2024-03-18T04:00:00.000Z');
  });

  it('weeks containing a DST change are 167 h and 169 h long', () => {
    const spring = at('2024-03-10T12:00:00Z');
    expect(iso(startOfWeek(spring, NY))).to.equal('2024-03-04T05:00:00.000Z');
    expect(startOfNextWeek(spring, NY) - startOfWeek(spring, NY)).to.equal(167 * HOUR_MS);
    const autumn = at('2024-11-03T12:00:00Z');
    expect(iso(startOfWeek(autumn, NY))).to.equal('2024-10-28T04:00:00.000Z');
    expect(startOfNextWeek(autumn, NY) - startOfWeek(autumn, NY)).to.equal(169 * HOUR_MS);
  });

  it('Asia/Shanghai: Monday 00:00 local is Sunday 16:00 UTC', () => {
    expect(iso(startOfWeek(at('2024-03-17T16:00:00Z'), 'Asia/Shanghai'))).to.equal('2024-03-17T16:00:00.000Z');
    expect(iso(startOfWeek(at('2024-03-17T15:59:59.999Z'), 'Asia/Shanghai'))).to.equal('2024-03-10T16:00:00.000Z');
  });
});

describe('windows: time zones and inputs', () => {
  it('invalid zones throw a TypeError naming the option and the value', () => {
    expect(() => assertTimeZone('Mars/Olympus_Mons')).to.throw(TypeError, /timezone.*"Mars\/Olympus_Mons"/);
    expect(() => assertTimeZone('Nowhere', 'options.timezone')).to.throw(TypeError, /options\.timezone.*"Nowhere"/);
    expect(() => assertTimeZone('')).to.throw(TypeError, /timezone/);
    expect(() => assertTimeZone('+02:00')).to.throw(TypeError, /"\+02:00"/);
    expect(() => assertTimeZone(42 as unknown as string)).to.throw(TypeError, /got 42/);
    expect(() => startOfDay(Date.now(), 'Not/AZone')).to.throw(TypeError, /"Not\/AZone"/);
    expect(() => isWindowExpired(WINDOWS.quotaDaily, 0, { nowMs: Date.now(), timezone: 'Bad/Zone' })).to.throw(TypeError, /Bad\/Zone/);
  });

  it('valid zones come back canonical', () => {
    expect(assertTimeZone('UTC')).to.equal('UTC');
    expect(assertTimeZone('utc')).to.equal('UTC');
    expect(assertTimeZone('america/new_york')).to.equal(NY);
    expect(assertTimeZone('Asia/Shanghai')).to.equal('Asia/Shanghai');
  });

  it('non-finite or out-of-range times throw naming the input', () => {
    expect(() => startOfDay(Number.NaN, 'UTC')).to.throw(TypeError, /ms must be epoch milliseconds/);
    expect(() => startOfWeek(Number.POSITIVE_INFINITY, NY)).to.throw(TypeError, /Infinity/);
    expect(() => expiryThreshold(WINDOWS.key5h, { nowMs: Number.NaN, timezone: 'UTC' })).to.throw(TypeError, /time\.nowMs/);
    expect(() => rollingWindow(0, 'now')).to.throw(TypeError, /lengthMs/);
    expect(() => rollingWindow(HOUR_MS, 'later' as 'now')).to.throw(TypeError, /anchor/);
  });
});

describe('windows: rules', () => {
  const now = at('2024-06-12T15:30:00Z');
  const utc: TimeContext = { nowMs: now, timezone: 'UTC' };

  it('a null start is expired for every rule, and its usage counts 0', () => {
    for (const [name, rule] of RULES) {
      expect(isWindowExpired(rule, null, utc), name).to.equal(true);
      expect(effectiveUsage(rule, 123n, null, utc), name).to.equal(0n);
      expect(effectiveUsage(rule, 123n, now, utc), name).to.equal(123n);
    }
  });

  it('30-day windows: exactly 30 days is expired, 1 ms less is not', () => {
    for (const rule of [WINDOWS.subscriptionMonthly, WINDOWS.quotaMonthly]) {
      expect(isWindowExpired(rule, now - 30 * DAY_MS, utc)).to.equal(true);
      expect(isWindowExpired(rule, now - 30 * DAY_MS + 1, utc)).to.equal(false);
      expect(effectiveUsage(rule, 5n, now - 30 * DAY_MS, utc)).to.equal(0n);
      expect(windowResetAt(rule, now - 30 * DAY_MS + 1, utc)).to.equal(now + 1);
      expect(windowResetAt(rule, now - 30 * DAY_MS, utc)).to.equal(now + 30 * DAY_MS);
    }
  });

  it('the 5 h key window: exactly 5 h is expired, 1 ms less is not; a new one starts now', () => {
    expect(isWindowExpired(WINDOWS.key5h, now - 5 * HOUR_MS, utc)).to.equal(true);
    expect(isWindowExpired(WINDOWS.key5h, now - 5 * HOUR_MS + 1, utc)).to.equal(false);
    expect(newWindowStart(WINDOWS.key5h, utc)).to.equal(now);
    expect(windowResetAt(WINDOWS.key5h, now - HOUR_MS, utc)).to.equal(now + 4 * HOUR_MS);
  });

  it('the 7-day subscription window is rolling from its start, not the calendar week', () => {
    const start = at('2024-06-06T18:00:00Z');
    expect(isWindowExpired(WINDOWS.subscriptionWeekly, start, { nowMs: start + 7 * DAY_MS - 1, timezone: NY })).to.equal(false);
    expect(isWindowExpired(WINDOWS.subscriptionWeekly, start, { nowMs: start + 7 * DAY_MS, timezone: NY })).to.equal(true);
  });

  it('subscription weeks and months are term-aligned: a restarted window begins whole periods after the old start, not at the next use', () => {
    const start = at('2024-06-06T18:00:00Z');
    const later: TimeContext = { nowMs: start + 9 * DAY_MS + HOUR_MS, timezone: NY };
    expect(newWindowStart(WINDOWS.subscriptionWeekly, later, start)).to.equal(start + 7 * DAY_MS);
    expect(windowResetAt(WINDOWS.subscriptionWeekly, start, later)).to.equal(start + 14 * DAY_MS);
    const muchLater: TimeContext = { nowMs: start + 95 * DAY_MS, timezone: NY };
    expect(newWindowStart(WINDOWS.subscriptionMonthly, muchLater, start)).to.equal(start + 90 * DAY_MS);
    // Never used (or a start ahead of the clock): the window starts now.
    expect(newWindowStart(WINDOWS.subscriptionMonthly, muchLater, null)).to.equal(muchLater.nowMs);
    expect(newWindowStart(WINDOWS.subscriptionMonthly, later, later.nowMs + 1)).to.equal(later.nowMs);
    // The 5 h key window and the quota month still start at the write.
    expect(newWindowStart(WINDOWS.key5h, later, start)).to.equal(later.nowMs);
    expect(newWindowStart(WINDOWS.quotaMonthly, later, start)).to.equal(later.nowMs);
  });

  it("a term-aligned window never starts after now, so never at or after a plan's expiry while the plan is valid", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 0, max: 2 ** 36 }), (startMs, elapsedMs) => {
        const time: TimeContext = { nowMs: startMs + elapsedMs, timezone: 'UTC' };
        for (const rule of [WINDOWS.subscriptionWeekly, WINDOWS.subscriptionMonthly]) {
          const next = newWindowStart(rule, time, startMs);
          expect(next).to.be.at.most(time.nowMs);
          expect(time.nowMs - next).to.be.below((rule as { lengthMs: number }).lengthMs);
          expect((next - startMs) % (rule as { lengthMs: number }).lengthMs).to.equal(0);
        }
      }),
    );
  });

  it('a plan of one day or less is a one-time daily card: its day runs 24 h from first use, past its own expiry', () => {
    const starts = at('2024-06-06T20:00:00Z');
    expect(isOneTimeDailyCard(starts, starts + DAY_MS)).to.equal(true);
    expect(isOneTimeDailyCard(starts, starts + HOUR_MS)).to.equal(true);
    expect(isOneTimeDailyCard(starts, starts + DAY_MS + 1)).to.equal(false);
    expect(subscriptionDailyRule(starts, starts + DAY_MS)).to.equal(WINDOWS.subscriptionCardDaily);
    expect(subscriptionDailyRule(starts, starts + 2 * DAY_MS)).to.equal(WINDOWS.subscriptionDaily);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: DAY_MS }), fc.integer({ min: 0, max: DAY_MS }), (termMs, firstUseMs) => {
        const firstUse = starts + Math.min(firstUseMs, termMs);
        const rule = subscriptionDailyRule(starts, starts + termMs);
        // Every instant of the card after its first use is still in the window that use began.
        const started = newWindowStart(rule, { nowMs: firstUse, timezone: NY });
        expect(isWindowExpired(rule, started, { nowMs: starts + termMs - 1, timezone: NY }) && starts + termMs - 1 >= firstUse).to.equal(false);
      }),
    );
  });

  it('calendar day windows expire at local midnight, not 24 h after their start', () => {
    const time: TimeContext = { nowMs: at('2024-06-12T04:30:00Z'), timezone: NY }; // 00:30 EDT
    expect(isWindowExpired(WINDOWS.subscriptionDaily, at('2024-06-12T03:59:59.999Z'), time)).to.equal(true);
    expect(isWindowExpired(WINDOWS.quotaDaily, at('2024-06-12T04:00:00Z'), time)).to.equal(false);
    expect(newWindowStart(WINDOWS.quotaDaily, time)).to.equal(at('2024-06-12T04:00:00Z'));
    expect(windowResetAt(WINDOWS.quotaDaily, at('2024-06-12T04:00:00Z'), time)).to.equal(at('2024-06-13T04:00:00Z'));
  });

  it('the weekly quota window expires at Monday 00:00 local', () => {
    const sunday: TimeContext = { nowMs: at('2024-06-17T03:59:00Z'), timezone: NY }; // Sun 23:59 EDT
    const monday: TimeContext = { nowMs: at('2024-06-17T04:00:00Z'), timezone: NY };
    const start = at('2024-06-10T04:00:00Z');
    expect(isWindowExpired(WINDOWS.quotaWeekly, start, sunday)).to.equal(false);
    expect(isWindowExpired(WINDOWS.quotaWeekly, start, monday)).to.equal(true);
    expect(windowResetAt(WINDOWS.quotaWeekly, start, sunday)).to.equal(monday.nowMs);
    expect(newWindowStart(WINDOWS.quotaWeekly, monday)).to.equal(monday.nowMs);
  });

  it('key1d and key7d windows are anchored at the start of the local day', () => {
    const time: TimeContext = { nowMs: at('2024-06-12T19:00:00Z'), timezone: 'Asia/Shanghai' }; // 03:00 local, 13 June
    const midnight = at('2024-06-12T16:00:00Z');
    expect(newWindowStart(WINDOWS.key1d, time)).to.equal(midnight);
    expect(newWindowStart(WINDOWS.key7d, time)).to.equal(midnight);
    expect(windowResetAt(WINDOWS.key1d, null, time)).to.equal(midnight + DAY_MS);
    expect(windowResetAt(WINDOWS.key7d, null, time)).to.equal(midnight + 7 * DAY_MS);
    // Expiry is still length-based from the stored start.
    expect(isWindowExpired(WINDOWS.key1d, midnight - DAY_MS + 3 * HOUR_MS, time)).to.equal(true);
    expect(isWindowExpired(WINDOWS.key1d, midnight - DAY_MS + 3 * HOUR_MS + 1, time)).to.equal(false);
  });

  it('on a 25 h day a key1d window started late in the day starts now, never born expired', () => {
    const dayStart = at('2024-11-03T04:00:00Z');
    const late: TimeContext = { nowMs: at('2024-11-04T04:30:00Z'), timezone: NY }; // 23:30 EST
    expect(newWindowStart(WINDOWS.key1d, late)).to.equal(late.nowMs);
    expect(windowResetAt(WINDOWS.key1d, null, late)).to.equal(late.nowMs + DAY_MS);
    expect(isWindowExpired(WINDOWS.key1d, newWindowStart(WINDOWS.key1d, late), late)).to.equal(false);
    const earlier: TimeContext = { nowMs: at('2024-11-04T03:30:00Z'), timezone: NY }; // 22:30 EST
    expect(newWindowStart(WINDOWS.key1d, earlier)).to.equal(dayStart);
    expect(windowResetAt(WINDOWS.key1d, null, earlier)).to.equal(dayStart + DAY_MS);
    expect(isWindowExpired(WINDOWS.key1d, dayStart, late)).to.equal(true);
  });

  const times: TimeContext[] = [
    utc,
    { nowMs: at('2024-03-10T06:59:59.999Z'), timezone: NY },
    { nowMs: at('2024-03-10T07:00:00Z'), timezone: NY },
    { nowMs: at('2024-11-03T06:30:00Z'), timezone: NY },
    { nowMs: at('2024-11-04T04:59:59.999Z'), timezone: NY },
    { nowMs: at('2024-09-08T04:00:00Z'), timezone: 'America/Santiago' },
    { nowMs: at('2024-06-16T15:59:59.999Z'), timezone: 'Asia/Shanghai' },
  ];

  it('expiryThreshold agrees with isWindowExpired and the spec on boundary starts, for every rule', () => {
    for (const time of times) {
      for (const [name, rule] of RULES) {
        const threshold = expiryThreshold(rule, time);
        const label = `${name} at ${iso(time.nowMs)} ${time.timezone}`;
        expect(isWindowExpired(rule, threshold - 1, time), label).to.equal(true);
        expect(isWindowExpired(rule, threshold, time), label).to.equal(false);
        expect(isWindowExpired(rule, threshold + 1, time), label).to.equal(false);
        // The spec's own definitions, stated independently of the threshold.
        for (const start of [threshold - 1, threshold, threshold + 1]) {
          const expected =
            rule.kind === 'rolling'
              ? time.nowMs - start >= rule.lengthMs
              : rule.kind === 'calendarDay'
                ? start < startOfDay(time.nowMs, time.timezone)
                : start < startOfWeek(time.nowMs, time.timezone);
          expect(isWindowExpired(rule, start, time), `${label} start ${start - threshold}`).to.equal(expected);
        }
      }
    }
  });

  it('windowResetAt is always after now, for fresh, old, null and future starts', () => {
    const late25h: TimeContext = { nowMs: at('2024-11-04T04:30:00Z'), timezone: NY };
    for (const time of [...times, late25h]) {
      for (const [name, rule] of RULES) {
        const now = time.nowMs;
        const starts = [null, now, now - 1, now + HOUR_MS, now - 5 * HOUR_MS, now - DAY_MS, now - 7 * DAY_MS, now - 31 * DAY_MS, expiryThreshold(rule, time)];
        for (const start of starts) {
          const reset = windowResetAt(rule, start, time);
          expect(reset, `${name} ${time.timezone} ${iso(now)} start ${start === null ? null : start - now}`).to.be.above(now);
        }
        // A window started by a write now never ends before now either.
        expect(isWindowExpired(rule, newWindowStart(rule, time), time), name).to.equal(false);
      }
    }
  });
});

describe('windows: secondsUntil', () => {
  it('rounds up to whole seconds and is at least 1', () => {
    expect(secondsUntil(1_000, 0)).to.equal(1);
    expect(secondsUntil(1_001, 0)).to.equal(2);
    expect(secondsUntil(60_000, 0)).to.equal(60);
    expect(secondsUntil(1, 0)).to.equal(1);
    expect(secondsUntil(0, 0)).to.equal(1);
    expect(secondsUntil(-5_000, 0)).to.equal(1);
    expect(secondsUntil(at('2024-06-13T00:00:00Z'), at('2024-06-12T23:59:58.5Z'))).to.equal(2);
    expect(() => secondsUntil(Number.NaN, 0)).to.throw(TypeError, /resetAtMs/);
  });
});

describe('clock', () => {
  it('ManualClock moves only when told', () => {
    const clock = new ManualClock(1_000);
    expect(clock.now()).to.equal(1_000);
    clock.advance(500);
    expect(clock.now()).to.equal(1_500);
    clock.advance(-200);
    expect(clock.now()).to.equal(1_300);
    clock.set(42);
    expect(clock.now()).to.equal(42);
    expect(() => clock.set(Number.NaN)).to.throw(TypeError, /ms/);
    expect(() => clock.advance(Number.POSITIVE_INFINITY)).to.throw(TypeError, /ms/);
    expect(() => new ManualClock(Number.NaN)).to.throw(TypeError, /startMs/);
    expect(clock.now()).to.equal(42);
  });

  it('systemClock reads Date.now', () => {
    const before = Date.now();
    const value = systemClock.now();
    expect(value).to.be.within(before, Date.now());
  });
});

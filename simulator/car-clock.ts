// Owns the car's notion of time: its raw clock, never read below its last known good time (TOKEN.md §6.4).
import { CLOCK_SKEW_S } from '../protocols/token.ts';

/**
 * How far the raw clock may fall below the last good time and still be read as that time: the size of an NTP
 * step correction, and the clock skew the protocol tolerates anyway.
 */
export const CLOCK_BACKSTEP_TOLERANCE_MS = CLOCK_SKEW_S * 1000;

/**
 * The car's time, ms, from its raw clock and its last known good time:
 * - raw unknown or nonsensical → null (unknown: every time-dependent check fails closed);
 * - raw at or after the last good time → raw;
 * - raw behind it by at most the tolerance → the last good time (time stands still until the clock catches up);
 * - raw further behind → null: a clock that went back that far is not believed, whichever way it is wrong.
 */
export function carTime(
  raw: number | null,
  lastGood: number | null,
  toleranceMs: number = CLOCK_BACKSTEP_TOLERANCE_MS,
): number | null {
  if (raw === null || !Number.isFinite(raw) || raw < 0) return null;
  const t = Math.floor(raw);
  if (lastGood === null || t >= lastGood) return t;
  return lastGood - t <= toleranceMs ? lastGood : null;
}

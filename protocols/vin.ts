// Owns VIN syntax: ISO 3779 character set, the North American check digit (49 CFR 565) and the model year
// (positions 10 and 7).

export const VIN_PATTERN = /^[A-HJ-NPR-Z0-9]{17}$/;

const TRANSLITERATION: Record<string, number> = {
  A: 1,
  B: 2,
  C: 3,
  D: 4,
  E: 5,
  F: 6,
  G: 7,
  H: 8,
  J: 1,
  K: 2,
  L: 3,
  M: 4,
  N: 5,
  P: 7,
  R: 9,
  S: 2,
  T: 3,
  U: 4,
  V: 5,
  W: 6,
  X: 7,
  Y: 8,
  Z: 9,
};
const WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
// Position 10 names a model year in a 30-year cycle: A = 1980 or 2010 ... Y = 2000 or 2030, 1 = 2001 or 2031 ...
// 9 = 2009 or 2039 (49 CFR 565.15, Table VI); never U, Z or 0.
const YEAR_CODES = 'ABCDEFGHJKLMNPRSTVWXY123456789';
const FIRST_CYCLE = 1980;
const SECOND_CYCLE = 2010;
const LAST_YEAR = SECOND_CYCLE + YEAR_CODES.length - 1;
const isDigit = (ch: string | undefined): boolean => ch !== undefined && ch >= '0' && ch <= '9';

export type VinProblem = 'VIN_MALFORMED' | 'VIN_CHECK_DIGIT';
/** A well-formed VIN that contradicts what the owner stated about the vehicle. */
export type VinMismatch = 'VIN_YEAR_MISMATCH' | 'VIN_MAKE_MISMATCH';

function charValue(ch: string): number {
  if (ch >= '0' && ch <= '9') return ch.charCodeAt(0) - 48;
  const v = TRANSLITERATION[ch];
  if (v === undefined) throw new RangeError(`not a VIN character: ${ch}`);
  return v;
}

/** The check digit (position 9) that a 17-character VIN must carry. */
export function computeCheckDigit(vin: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += charValue(vin[i] as string) * (WEIGHTS[i] as number);
  const r = sum % 11;
  return r === 10 ? 'X' : String(r);
}

/** Returns the first problem found, or null for a well-formed VIN with a correct check digit. */
export function vinProblem(vin: string): VinProblem | null {
  if (!VIN_PATTERN.test(vin)) return 'VIN_MALFORMED';
  if (vin[8] !== computeCheckDigit(vin)) return 'VIN_CHECK_DIGIT';
  return null;
}

/**
 * The model year a VIN states, or null when position 10 is not a model-year code. Position 10 alone repeats every
 * 30 years; for passenger cars, multipurpose passenger vehicles and trucks of 10,000 lb (4,536 kg) GVWR or less,
 * position 7 says which cycle: a digit for 1980-2009, a letter for 2010-2039 (49 CFR 565.15). Those are the only
 * vehicles the catalog holds, so the rule applies to every VIN read here.
 */
export function modelYearOf(vin: string): number | null {
  const idx = YEAR_CODES.indexOf(vin[9] ?? '');
  if (idx < 0 || vin.length !== 17) return null;
  return (isDigit(vin[6]) ? FIRST_CYCLE : SECOND_CYCLE) + idx;
}

/** Whether positions 7 and 10 state exactly this model year (49 CFR 565.15). */
export const vinAgreesWithYear = (vin: string, year: number): boolean => modelYearOf(vin) === year;

/** The position-10 code of a model year from 1980 to 2039. */
export function yearCode(year: number): string {
  if (!Number.isInteger(year) || year < FIRST_CYCLE || year > LAST_YEAR) {
    throw new RangeError(`no VIN model-year code for ${year}`);
  }
  return YEAR_CODES[(year - FIRST_CYCLE) % YEAR_CODES.length] as string;
}

/** World manufacturer identifier: the first three characters. */
export const wmiOf = (vin: string): string => vin.slice(0, 3);

/** Whether the VIN's world manufacturer identifier is one of the make's (positions 1-3, ISO 3780). */
export const vinAgreesWithWmi = (vin: string, wmis: readonly string[]): boolean => wmis.includes(wmiOf(vin));

/**
 * Builds a valid VIN from a WMI, a 5-character descriptor (positions 4-8), a model year and a 7-character serial.
 * The descriptor's fourth character is position 7, so it must be a digit for 1980-2009 and a letter for 2010-2039.
 */
export function composeVin(wmi: string, descriptor: string, year: number, plantAndSerial: string): string {
  const draft = `${wmi}${descriptor}0${yearCode(year)}${plantAndSerial}`;
  if (!VIN_PATTERN.test(draft)) throw new RangeError(`cannot compose a VIN from ${draft}`);
  if (isDigit(draft[6]) !== year < SECOND_CYCLE) {
    throw new RangeError(
      `position 7 '${draft[6]}' of ${draft} does not name the cycle of model year ${year}`,
    );
  }
  return `${draft.slice(0, 8)}${computeCheckDigit(draft)}${draft.slice(9)}`;
}

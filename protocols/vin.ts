// Owns VIN syntax: ISO 3779 character set, the North American check digit (49 CFR 565) and the model-year code.

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
// Position 10 cycles every 30 years; 2010..2039 use this sequence (49 CFR 565.15(c)).
const YEAR_CODES = 'ABCDEFGHJKLMNPRSTVWXY123456789';

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

/** Model years (2010-2039 cycle, plus 1980-2009) that the 10th character can stand for. */
export function modelYearsFor(vin: string): number[] {
  const idx = YEAR_CODES.indexOf(vin[9] ?? '');
  if (idx < 0) return [];
  return [1980 + idx, 2010 + idx];
}

/** Whether the model-year character (position 10) can stand for the stated year (49 CFR 565.15(c)). */
export const vinAgreesWithYear = (vin: string, year: number): boolean => modelYearsFor(vin).includes(year);

export const yearCode = (year: number): string => YEAR_CODES[(year - 1980) % 30] as string;

/** World manufacturer identifier: the first three characters. */
export const wmiOf = (vin: string): string => vin.slice(0, 3);

/** Whether the VIN's world manufacturer identifier is one of the make's (positions 1-3, ISO 3780). */
export const vinAgreesWithWmi = (vin: string, wmis: readonly string[]): boolean => wmis.includes(wmiOf(vin));

/** Builds a valid VIN from a WMI, a 5-character descriptor, a model year and a 7-character serial. */
export function composeVin(wmi: string, descriptor: string, year: number, plantAndSerial: string): string {
  const draft = `${wmi}${descriptor}0${yearCode(year)}${plantAndSerial}`;
  if (!VIN_PATTERN.test(draft)) throw new RangeError(`cannot compose a VIN from ${draft}`);
  return `${draft.slice(0, 8)}${computeCheckDigit(draft)}${draft.slice(9)}`;
}

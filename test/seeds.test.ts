// The seed files are checked where they are read: every seeded VIN is well formed and decodes to the year it states.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { modelYearOf, vinProblem } from '../protocols/vin.ts';
import { loadSeeds, SEEDS_DIR } from '../seeds/index.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A copy of the seeds with fleet.json rewritten by `edit`. */
function seedsWith(edit: (fleet: { vehicles: Array<Record<string, unknown>> }) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'curbside-seeds-'));
  dirs.push(dir);
  for (const name of ['catalog.json', 'demo.json']) copyFileSync(join(SEEDS_DIR, name), join(dir, name));
  const fleet = JSON.parse(readFileSync(join(SEEDS_DIR, 'fleet.json'), 'utf8'));
  edit(fleet);
  writeFileSync(join(dir, 'fleet.json'), JSON.stringify(fleet));
  return dir;
}

describe('the seeded fleet', () => {
  it('every VIN is well formed and its positions 7 and 10 decode to the stated model year', () => {
    const { vehicles } = loadSeeds();
    expect(vehicles.length).toBeGreaterThan(0);
    for (const v of vehicles) {
      expect(vinProblem(v.vin), v.vin).toBeNull();
      expect(modelYearOf(v.vin), v.vin).toBe(v.year);
    }
  });

  it('a seed whose VIN decodes to another year stops the loader, naming the vehicle', () => {
    const dir = seedsWith((fleet) => {
      (fleet.vehicles[0] as Record<string, unknown>).year = 1989; // 1G1ZE5ST5KF100231 is a 2019
    });
    expect(() => loadSeeds(dir)).toThrow(
      /1G1ZE5ST5KF100231 states model year 2019 \(positions 7 and 10\), not 1989/,
    );
  });

  it('a seed VIN with a wrong check digit stops the loader', () => {
    const dir = seedsWith((fleet) => {
      (fleet.vehicles[0] as Record<string, unknown>).vin = '1G1ZE5ST0KF100231';
    });
    expect(() => loadSeeds(dir)).toThrow(/check digit/);
  });
});

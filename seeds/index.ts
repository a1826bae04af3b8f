// Owns loading and validating the seed files: the compatibility catalog, the demo fleet, owners and locations.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { type Catalog, CatalogSchema, ProviderIdSchema } from '../protocols/catalog.ts';
import { PositionSchema, Vin } from '../protocols/messages.ts';
import { modelYearOf, vinProblem } from '../protocols/vin.ts';

export const SEEDS_DIR = dirname(fileURLToPath(import.meta.url));

export const SeedVehicleSchema = z
  .strictObject({
    vin: Vin,
    make: z.string(),
    model: z.string(),
    year: z.number().int(),
    provider: ProviderIdSchema,
    ownerId: z.string(),
    position: PositionSchema,
  })
  // A seed is what linking will be asked to accept: its VIN must pass the same checks (check digit, model year).
  .superRefine((v, ctx) => {
    if (vinProblem(v.vin) === 'VIN_CHECK_DIGIT') {
      ctx.addIssue({ code: 'custom', path: ['vin'], message: `${v.vin}: wrong check digit (position 9)` });
    }
    const year = modelYearOf(v.vin);
    if (year !== v.year) {
      ctx.addIssue({
        code: 'custom',
        path: ['year'],
        message: `${v.vin} states model year ${year} (positions 7 and 10), not ${v.year}`,
      });
    }
  });
export type SeedVehicle = z.infer<typeof SeedVehicleSchema>;

export const SeedLocationSchema = z.strictObject({
  id: z.string(),
  ownerId: z.string(),
  label: z.string(),
  kind: z.enum(['home', 'workplace', 'store']),
  lat: z.number(),
  lon: z.number(),
  radiusM: z.number().positive(),
  access: z.enum(['public', 'garage', 'restricted']),
});
export type SeedLocation = z.infer<typeof SeedLocationSchema>;

const FleetFileSchema = z.strictObject({ vehicles: z.array(SeedVehicleSchema).min(1) });
const DemoFileSchema = z.strictObject({
  owners: z.array(z.strictObject({ id: z.string(), name: z.string(), email: z.string() })),
  locations: z.array(SeedLocationSchema),
});

export interface Seeds {
  catalog: Catalog;
  vehicles: SeedVehicle[];
  owners: z.infer<typeof DemoFileSchema>['owners'];
  locations: SeedLocation[];
}

const readJson = (dir: string, name: string): unknown => JSON.parse(readFileSync(join(dir, name), 'utf8'));

/** Reads and validates every seed file; a malformed seed stops the caller with zod's message. */
export function loadSeeds(dir: string = SEEDS_DIR): Seeds {
  const catalog = CatalogSchema.parse(readJson(dir, 'catalog.json'));
  const { vehicles } = FleetFileSchema.parse(readJson(dir, 'fleet.json'));
  const { owners, locations } = DemoFileSchema.parse(readJson(dir, 'demo.json'));
  return { catalog, vehicles, owners, locations };
}

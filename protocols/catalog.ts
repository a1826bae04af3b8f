// Owns the compatibility catalog's shape: which makes, from which model year, through which connected-car provider.
import { z } from 'zod';

export const ProviderIdSchema = z.enum(['onstar', 'volvo-on-call']);
export type ProviderId = z.infer<typeof ProviderIdSchema>;

export const CatalogEntrySchema = z.strictObject({
  make: z.string().min(1),
  provider: ProviderIdSchema,
  minYear: z.number().int(),
  /** World manufacturer identifiers (VIN positions 1-3) this make uses. */
  wmi: z.array(z.string().regex(/^[A-HJ-NPR-Z0-9]{3}$/)).min(1),
});
export type CatalogEntry = z.infer<typeof CatalogEntrySchema>;

export const CatalogSchema = z.strictObject({
  providers: z.array(z.strictObject({ id: ProviderIdSchema, name: z.string() })),
  entries: z.array(CatalogEntrySchema).min(1),
});
export type Catalog = z.infer<typeof CatalogSchema>;

/** The catalog entry for a make (case-insensitive), whatever the provider and year; null when not listed. */
export function entryForMake(catalog: Catalog, make: string): CatalogEntry | null {
  return catalog.entries.find((e) => e.make.toLowerCase() === make.toLowerCase()) ?? null;
}

/** The catalog entry a vehicle falls under, or null when it is not compatible. */
export function findCompatible(
  catalog: Catalog,
  v: { make: string; year: number; provider: string },
): CatalogEntry | null {
  const entry = entryForMake(catalog, v.make);
  if (!entry || entry.provider !== v.provider || v.year < entry.minYear) return null;
  return entry;
}

// Owns the locations table as records: the owner's registered delivery places.
import type { Db } from './db.ts';
import type { LocationsTable } from './schema.ts';

export type LocationAccess = 'public' | 'garage' | 'restricted' | 'unknown';

export interface LocationRecord {
  id: string;
  ownerId: string;
  label: string;
  kind: string;
  lat: number;
  lon: number;
  radiusM: number;
  access: LocationAccess;
  createdAt: number;
}

const toLocation = (r: LocationsTable): LocationRecord => ({
  id: r.id,
  ownerId: r.owner_id,
  label: r.label,
  kind: r.kind,
  lat: r.lat,
  lon: r.lon,
  radiusM: r.radius_m,
  access: (['public', 'garage', 'restricted'].includes(r.access) ? r.access : 'unknown') as LocationAccess,
  createdAt: Number(r.created_at),
});

export async function insertLocation(db: Db, l: LocationRecord): Promise<void> {
  await db
    .insertInto('locations')
    .values({
      id: l.id,
      owner_id: l.ownerId,
      label: l.label,
      kind: l.kind,
      lat: l.lat,
      lon: l.lon,
      radius_m: l.radiusM,
      access: l.access,
      created_at: l.createdAt,
    })
    .execute();
}

export async function findLocation(db: Db, id: string): Promise<LocationRecord | null> {
  const row = await db.selectFrom('locations').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? toLocation(row) : null;
}

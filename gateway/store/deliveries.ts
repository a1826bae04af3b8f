// Owns the deliveries table as records: a delivery's window, parking, opening and relock state.
import { type Db, nullableNumber } from './db.ts';
import { prepared } from './prepared.ts';
import type { DeliveriesTable } from './schema.ts';

/**
 * relocked: the car locked itself (fail-safe) while the delivery was unlocked, without the driver's lock.
 * expired: its window ended before it was ever opened (the watchdog's sweep).
 */
export const DELIVERY_STATUSES = [
  'scheduled',
  'unlocked',
  'relocked',
  'completed',
  'failed',
  'cancelled',
  'expired',
] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export interface DeliveryRecord {
  id: string;
  vin: string;
  locationId: string;
  driverId: string;
  packageIds: string[];
  windowStart: number;
  windowEnd: number;
  status: DeliveryStatus;
  unlocksUsed: number;
  createdAt: number;
  updatedAt: number;
  blocked: boolean;
  /** What the car reported when it confirmed its parking; null until then. */
  parking: ParkingConfirmation | null;
  unlockedAt: number | null;
  unlockedCarAt: number | null;
  relockedAt: number | null;
  relockRetryAt: number | null;
  lockUnconfirmedAt: number | null;
  /** The carrier whose backend scheduled it; null when an unbound key scheduled it without one. */
  carrierId?: string | null;
}

export interface ParkingConfirmation {
  confirmedAt: number;
  position: { lat: number; lon: number };
  /** Why it no longer holds (a later report); null while it does. */
  invalidCode: string | null;
}

/** The fields of a delivery that change after scheduling. */
export type DeliveryPatch = Partial<
  Pick<
    DeliveryRecord,
    | 'status'
    | 'unlocksUsed'
    | 'blocked'
    | 'unlockedAt'
    | 'unlockedCarAt'
    | 'relockedAt'
    | 'relockRetryAt'
    | 'lockUnconfirmedAt'
  >
> & { parking?: ParkingConfirmation | null; updatedAt: number };

const toDelivery = (r: DeliveriesTable): DeliveryRecord => ({
  id: r.id,
  vin: r.vin,
  locationId: r.location_id,
  driverId: r.driver_id,
  packageIds: JSON.parse(r.package_ids) as string[],
  windowStart: Number(r.window_start),
  windowEnd: Number(r.window_end),
  status: r.status as DeliveryStatus,
  unlocksUsed: Number(r.unlocks_used),
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
  blocked: r.blocked === 1,
  parking:
    r.parking_confirmed_at === null || r.parking_lat === null || r.parking_lon === null
      ? null
      : {
          confirmedAt: Number(r.parking_confirmed_at),
          position: { lat: r.parking_lat, lon: r.parking_lon },
          invalidCode: r.parking_invalid_code,
        },
  unlockedAt: nullableNumber(r.unlocked_at),
  unlockedCarAt: nullableNumber(r.unlocked_car_at),
  relockedAt: nullableNumber(r.relocked_at),
  relockRetryAt: nullableNumber(r.relock_retry_at),
  lockUnconfirmedAt: nullableNumber(r.lock_unconfirmed_at),
  carrierId: r.carrier_id ?? null,
});

export async function insertDelivery(db: Db, d: DeliveryRecord): Promise<void> {
  await db
    .insertInto('deliveries')
    .values({
      id: d.id,
      vin: d.vin,
      location_id: d.locationId,
      driver_id: d.driverId,
      package_ids: JSON.stringify(d.packageIds),
      window_start: d.windowStart,
      window_end: d.windowEnd,
      status: d.status,
      unlocks_used: d.unlocksUsed,
      created_at: d.createdAt,
      updated_at: d.updatedAt,
      blocked: d.blocked ? 1 : 0,
      parking_confirmed_at: null,
      parking_lat: null,
      parking_lon: null,
      parking_invalid_code: null,
      unlocked_at: null,
      unlocked_car_at: null,
      relocked_at: null,
      relock_retry_at: null,
      lock_unconfirmed_at: null,
      carrier_id: d.carrierId ?? null,
    })
    .execute();
}

const selectDelivery = prepared((db, id: string) =>
  db.selectFrom('deliveries').selectAll().where('id', '=', id),
);

export async function findDelivery(db: Db, id: string): Promise<DeliveryRecord | null> {
  const row = (await selectDelivery(db, id)).rows[0];
  return row ? toDelivery(row) : null;
}

/** Updates a delivery; with `unlessStatus`, only while it is not in that status. Returns whether a row changed. */
export async function updateDelivery(
  db: Db,
  id: string,
  patch: DeliveryPatch & { unlessStatus?: DeliveryStatus },
): Promise<boolean> {
  const set = <K extends keyof DeliveryPatch>(k: K): boolean => Object.hasOwn(patch, k);
  let query = db
    .updateTable('deliveries')
    .set({
      updated_at: patch.updatedAt,
      ...(patch.status ? { status: patch.status } : {}),
      ...(patch.unlocksUsed === undefined ? {} : { unlocks_used: patch.unlocksUsed }),
      ...(patch.blocked === undefined ? {} : { blocked: patch.blocked ? 1 : 0 }),
      ...(set('unlockedAt') ? { unlocked_at: patch.unlockedAt ?? null } : {}),
      ...(set('unlockedCarAt') ? { unlocked_car_at: patch.unlockedCarAt ?? null } : {}),
      ...(set('relockedAt') ? { relocked_at: patch.relockedAt ?? null } : {}),
      ...(set('relockRetryAt') ? { relock_retry_at: patch.relockRetryAt ?? null } : {}),
      ...(set('lockUnconfirmedAt') ? { lock_unconfirmed_at: patch.lockUnconfirmedAt ?? null } : {}),
      ...(set('parking')
        ? {
            parking_confirmed_at: patch.parking?.confirmedAt ?? null,
            parking_lat: patch.parking?.position.lat ?? null,
            parking_lon: patch.parking?.position.lon ?? null,
            parking_invalid_code: patch.parking?.invalidCode ?? null,
          }
        : {}),
    })
    .where('id', '=', id);
  if (patch.unlessStatus) query = query.where('status', '<>', patch.unlessStatus);
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Deliveries of a VIN in the given statuses, oldest first. */
export async function deliveriesOf(
  db: Db,
  vin: string,
  statuses: DeliveryStatus[],
): Promise<DeliveryRecord[]> {
  const rows = await db
    .selectFrom('deliveries')
    .selectAll()
    .where('vin', '=', vin)
    .where('status', 'in', statuses)
    .orderBy('created_at')
    .execute();
  return rows.map(toDelivery);
}

/** Deliveries of a VIN whose car was unlocked and is not yet confirmed locked again. */
const selectOpenDeliveries = prepared((db, vin: string) =>
  db
    .selectFrom('deliveries')
    .selectAll()
    .where('vin', '=', vin)
    .where('unlocked_at', 'is not', null)
    .where('relocked_at', 'is', null),
);

const selectReportable = prepared((db, vin: string) =>
  db
    .selectFrom('deliveries')
    .selectAll()
    .where('vin', '=', vin)
    .where((eb) =>
      eb.or([
        eb('status', '=', 'scheduled'),
        eb.and([eb('unlocked_at', 'is not', null), eb('relocked_at', 'is', null)]),
      ]),
    )
    .orderBy('created_at'),
);

/**
 * What a car's state report may change, in one read: its scheduled deliveries (a parking confirmation the report
 * contradicts) and those whose car may be open (a locked report confirms the relock), each oldest first.
 */
export async function reportableDeliveriesOf(
  db: Db,
  vin: string,
): Promise<{ scheduled: DeliveryRecord[]; open: DeliveryRecord[] }> {
  const rows = (await selectReportable(db, vin)).rows.map(toDelivery);
  return {
    scheduled: rows.filter((d) => d.status === 'scheduled'),
    open: rows.filter((d) => d.unlockedAt !== null && d.relockedAt === null),
  };
}

export async function openDeliveriesOf(db: Db, vin: string): Promise<DeliveryRecord[]> {
  return (await selectOpenDeliveries(db, vin)).rows.map(toDelivery);
}

/**
 * Deliveries never opened whose window ended at or before `now`: scheduled, no unlock used or in flight, no
 * unlock that may have opened the car. Oldest window first, at most `limit`.
 */
export async function unopenedPastWindow(
  db: Db,
  now: number,
  limit: number,
): Promise<Array<Pick<DeliveryRecord, 'id' | 'vin'>>> {
  return db
    .selectFrom('deliveries')
    .select(['id', 'vin'])
    .where('status', '=', 'scheduled')
    .where('window_end', '<=', now)
    .where('unlocks_used', '=', 0)
    .where('unlocked_at', 'is', null)
    .orderBy('window_end')
    .limit(limit)
    .execute();
}

/**
 * What the relock watchdog must lock: the car was unlocked at least relockAfterMs before `now`, has not
 * been confirmed locked since, its vehicle is still linked, and no retry is scheduled later than `now`.
 */
export async function overdueRelocks(db: Db, now: number, relockAfterMs: number): Promise<DeliveryRecord[]> {
  const rows = await db
    .selectFrom('deliveries')
    .innerJoin('vehicles', 'vehicles.vin', 'deliveries.vin')
    .selectAll('deliveries')
    .where('deliveries.relocked_at', 'is', null)
    .where('deliveries.unlocked_at', '<=', now - relockAfterMs)
    .where('vehicles.unlinked_at', 'is', null)
    .where((eb) =>
      eb.or([eb('deliveries.relock_retry_at', 'is', null), eb('deliveries.relock_retry_at', '<=', now)]),
    )
    .orderBy('deliveries.unlocked_at')
    .execute();
  return rows.map(toDelivery);
}

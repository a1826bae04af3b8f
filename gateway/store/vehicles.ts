// Owns the vehicles table as records: linking, pinned certificates, what each car last reported.
import { type Db, nullableNumber } from './db.ts';
import { prepared } from './prepared.ts';
import type { VehiclesTable } from './schema.ts';

export interface VehicleRecord {
  vin: string;
  make: string;
  model: string;
  year: number;
  provider: string;
  ownerId: string;
  consent: string[];
  linkedAt: number;
  online: boolean;
  locked: boolean | null;
  position: { lat: number; lon: number } | null;
  ignition: string | null;
  doorsOpen: boolean | null;
  lastSeen: number | null;
  lastSeq: number | null;
  blocked: boolean;
  unlinkedAt: number | null;
}

/** Every column a VehicleRecord is read from: not the pinned certificate, which only ack checks read. */
const VEHICLE_COLUMNS = [
  'vin',
  'make',
  'model',
  'year',
  'provider',
  'owner_id',
  'consent',
  'linked_at',
  'online',
  'locked',
  'lat',
  'lon',
  'ignition',
  'doors_open',
  'last_seen',
  'last_seq',
  'blocked',
  'unlinked_at',
] as const;

const toVehicle = (r: Omit<VehiclesTable, 'cert_pem'>): VehicleRecord => ({
  vin: r.vin,
  make: r.make,
  model: r.model,
  year: Number(r.year),
  provider: r.provider,
  ownerId: r.owner_id,
  consent: r.consent.split(',').filter(Boolean),
  linkedAt: Number(r.linked_at),
  online: r.online === 1,
  locked: r.locked === null ? null : r.locked === 1,
  position: r.lat === null || r.lon === null ? null : { lat: r.lat, lon: r.lon },
  ignition: r.ignition,
  doorsOpen: r.doors_open === null ? null : r.doors_open === 1,
  lastSeen: r.last_seen === null ? null : Number(r.last_seen),
  lastSeq: r.last_seq === null ? null : Number(r.last_seq),
  blocked: r.blocked === 1,
  unlinkedAt: nullableNumber(r.unlinked_at),
});

export async function insertVehicle(
  db: Db,
  v: Omit<
    VehicleRecord,
    | 'online'
    | 'locked'
    | 'position'
    | 'ignition'
    | 'doorsOpen'
    | 'lastSeen'
    | 'lastSeq'
    | 'blocked'
    | 'unlinkedAt'
  > & { certPem: string },
): Promise<void> {
  await db
    .insertInto('vehicles')
    .values({
      vin: v.vin,
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      owner_id: v.ownerId,
      consent: v.consent.join(','),
      linked_at: v.linkedAt,
      online: 0,
      locked: null,
      lat: null,
      lon: null,
      ignition: null,
      doors_open: null,
      last_seen: null,
      last_seq: null,
      cert_pem: v.certPem,
      blocked: 0,
      unlinked_at: null,
    })
    .execute();
}

const selectVehicleCertificate = prepared((db, vin: string) =>
  db.selectFrom('vehicles').select('cert_pem').where('vin', '=', vin),
);

/** The certificate pinned for a vehicle when it was linked, PEM; null when not linked or linked before 0002. */
export async function findVehicleCertificate(db: Db, vin: string): Promise<string | null> {
  return (await selectVehicleCertificate(db, vin)).rows[0]?.cert_pem ?? null;
}

/** Pins a re-issued certificate (rotation) in place of the one kept so far. */
export async function repinVehicleCertificate(db: Db, vin: string, pem: string): Promise<void> {
  await db.updateTable('vehicles').set({ cert_pem: pem }).where('vin', '=', vin).execute();
}

/** Vehicles linked before migration 0002, which have no pinned certificate yet. */
export async function listVehiclesWithoutCertificate(db: Db): Promise<string[]> {
  const rows = await db
    .selectFrom('vehicles')
    .select('vin')
    .where('cert_pem', 'is', null)
    .orderBy('vin')
    .execute();
  return rows.map((r) => r.vin);
}

/** Pins a certificate for a vehicle that has none; never replaces one already pinned. */
export async function pinVehicleCertificateIfMissing(db: Db, vin: string, certPem: string): Promise<void> {
  await db
    .updateTable('vehicles')
    .set({ cert_pem: certPem })
    .where('vin', '=', vin)
    .where('cert_pem', 'is', null)
    .execute();
}

/** Links a VIN again after an unlink: a new owner, consent and link time; what the car reported stays. */
export async function relinkVehicle(
  db: Db,
  v: Pick<
    VehicleRecord,
    'vin' | 'make' | 'model' | 'year' | 'provider' | 'ownerId' | 'consent' | 'linkedAt'
  > & {
    certPem: string;
  },
): Promise<void> {
  await db
    .updateTable('vehicles')
    .set({
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      owner_id: v.ownerId,
      consent: v.consent.join(','),
      linked_at: v.linkedAt,
      blocked: 0,
      unlinked_at: null,
      cert_pem: v.certPem,
    })
    .where('vin', '=', v.vin)
    .where('unlinked_at', 'is not', null)
    .execute();
}

export async function updateVehicle(
  db: Db,
  vin: string,
  patch: { blocked?: boolean; unlinkedAt?: number },
): Promise<void> {
  await db
    .updateTable('vehicles')
    .set({
      ...(patch.blocked === undefined ? {} : { blocked: patch.blocked ? 1 : 0 }),
      ...(patch.unlinkedAt === undefined ? {} : { unlinked_at: patch.unlinkedAt }),
    })
    .where('vin', '=', vin)
    .execute();
}

const selectVehicle = prepared((db, vin: string) =>
  db.selectFrom('vehicles').select(VEHICLE_COLUMNS).where('vin', '=', vin),
);

export async function findVehicle(db: Db, vin: string): Promise<VehicleRecord | null> {
  const row = (await selectVehicle(db, vin)).rows[0];
  return row ? toVehicle(row) : null;
}

const selectVehicleWithCertificate = prepared((db, vin: string) =>
  db
    .selectFrom('vehicles')
    .select([...VEHICLE_COLUMNS, 'cert_pem'])
    .where('vin', '=', vin),
);

/**
 * The vehicle and its pinned certificate in one read, for a request that sends the car a command: the ack is
 * checked against this certificate without reading it again (a rotation since is caught by the check's fallback to
 * the certificate the CA issues now, gateway/vehicles/acks.ts).
 */
export async function findVehicleWithCertificate(
  db: Db,
  vin: string,
): Promise<{ vehicle: VehicleRecord; certPem: string | null } | null> {
  const row = (await selectVehicleWithCertificate(db, vin)).rows[0];
  return row ? { vehicle: toVehicle(row), certPem: row.cert_pem } : null;
}

/** The provider a VIN was linked with (linked now or before): the dialect its messages are in. */
export async function providerOf(db: Db, vin: string): Promise<string | null> {
  const row = await db.selectFrom('vehicles').select('provider').where('vin', '=', vin).executeTakeFirst();
  return row?.provider ?? null;
}

export async function listVehicles(db: Db): Promise<VehicleRecord[]> {
  const rows = await db
    .selectFrom('vehicles')
    .select(VEHICLE_COLUMNS)
    .orderBy('linked_at')
    .orderBy('vin')
    .execute();
  return rows.map(toVehicle);
}

/** A car was seen, or announced offline (its presence), with nothing else known. */
export interface SeenState {
  online: boolean;
  seenAt: number;
}

/** A whole state report. */
export interface ReportedState extends SeenState {
  locked: boolean;
  position: { lat: number; lon: number };
  ignition: string;
  doorsOpen: boolean;
  seq: number;
}

export type ObservedState = SeenState | ReportedState;

const updateVehicleSeen = prepared((db, vin: string, online: number, seenAt: number) =>
  db.updateTable('vehicles').set({ online, last_seen: seenAt }).where('vin', '=', vin),
);

const updateVehicleReport = prepared(
  (
    db,
    vin: string,
    online: number,
    seenAt: number,
    locked: number,
    lat: number,
    lon: number,
    ignition: string,
    doorsOpen: number,
    seq: number,
  ) =>
    db
      .updateTable('vehicles')
      .set({
        online,
        last_seen: seenAt,
        locked,
        lat,
        lon,
        ignition,
        doors_open: doorsOpen,
        last_seq: seq,
      })
      .where('vin', '=', vin),
);

const bit = (v: boolean): number => (v ? 1 : 0);

/** Records what a car reported (MQTT keeps one client's QoS 1 messages in order, so the last one wins). */
export async function recordVehicleState(db: Db, vin: string, s: ObservedState): Promise<void> {
  if (!('locked' in s)) {
    await updateVehicleSeen(db, vin, bit(s.online), s.seenAt);
    return;
  }
  const { position } = s;
  await updateVehicleReport(
    db,
    vin,
    bit(s.online),
    s.seenAt,
    bit(s.locked),
    position.lat,
    position.lon,
    s.ignition,
    bit(s.doorsOpen),
    s.seq,
  );
}

const updateVehicleAcked = prepared((db, vin: string, locked: number, seenAt: number) =>
  db.updateTable('vehicles').set({ online: 1, locked, last_seen: seenAt }).where('vin', '=', vin),
);

/**
 * What a verified ack says of the car: it is online and its lock is as the ack states. Written in the ack's own
 * unit, so the state report the car sends next usually changes nothing (see reportChanges).
 */
export async function recordAckedState(db: Db, vin: string, locked: boolean, seenAt: number): Promise<void> {
  await updateVehicleAcked(db, vin, bit(locked), seenAt);
}

/**
 * Whether a state report must be written: it changes what the row says (online, lock, position, ignition, doors),
 * or the row's last_seen is older than `resolutionMs`. A report that only repeats the row is not written (no
 * commit); lastSeen is then at most resolutionMs behind the car's last report.
 */
export function reportChanges(row: VehicleRecord | null, s: ReportedState, resolutionMs: number): boolean {
  return (
    !row?.online ||
    row.locked !== s.locked ||
    row.position?.lat !== s.position.lat ||
    row.position?.lon !== s.position.lon ||
    row.ignition !== s.ignition ||
    row.doorsOpen !== s.doorsOpen ||
    row.lastSeen === null ||
    s.seenAt - row.lastSeen >= resolutionMs
  );
}

/** The car's session is gone without a report of its own (the broker closed it): offline, nothing else changes. */
export async function markVehicleOffline(db: Db, vin: string): Promise<void> {
  await db.updateTable('vehicles').set({ online: 0 }).where('vin', '=', vin).execute();
}

export async function countOnlineVehicles(db: Db): Promise<number> {
  const row = await db
    .selectFrom('vehicles')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('online', '=', 1)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

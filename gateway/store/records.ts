// Owns reading and writing the store's rows as domain records; every function takes a db or a transaction.
import { type Kysely, sql, type Transaction } from 'kysely';
import { appendAudit, withinTransaction } from './audit.ts';
import { prepared } from './prepared.ts';
import type { Database, DeliveriesTable, LocationsTable, VehiclesTable } from './schema.ts';

export type Db = Kysely<Database> | Transaction<Database>;

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

/** relocked: the car locked itself (fail-safe) while the delivery was unlocked, without the driver's lock. */
export type DeliveryStatus = 'scheduled' | 'unlocked' | 'relocked' | 'completed' | 'failed' | 'cancelled';

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

export interface TimelineEntry {
  seq: number;
  at: number;
  kind: string;
  outcome: 'granted' | 'denied' | 'info';
  code: string | null;
  detail: Record<string, unknown>;
}

const nullableNumber = (v: number | null): number | null => (v === null ? null : Number(v));

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

export async function openDeliveriesOf(db: Db, vin: string): Promise<DeliveryRecord[]> {
  return (await selectOpenDeliveries(db, vin)).rows.map(toDelivery);
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

/**
 * Appends a timeline event and its audit entry, in one transaction: the caller's, or a new one. `at` is the
 * decision's time, but never earlier than the entry before it: a decision taken before another one was written
 * (a request and the reconciler racing for the store) would otherwise show time running backwards along `seq`.
 * The clamp runs in the INSERT itself, so it is atomic, and the audit entry records the time the timeline got.
 */
const insertEvent = prepared(
  (db, deliveryId: string, at: number, kind: string, outcome: string, code: string | null, detail: string) =>
    db
      .insertInto('delivery_events')
      .values({
        delivery_id: deliveryId,
        // SQLite's two-argument max() is its GREATEST.
        at: sql<number>`max(${at}, coalesce((select max(at) from delivery_events where delivery_id = ${deliveryId}), 0))`,
        kind,
        outcome,
        code,
        detail,
      })
      .returning('at'),
);

export async function appendEvent(db: Db, deliveryId: string, e: Omit<TimelineEntry, 'seq'>): Promise<void> {
  // protocols/AUDIT.md §4: the audit entry commits with the decision or not at all.
  if (!db.isTransaction) return withinTransaction(db, (trx) => appendEvent(trx, deliveryId, e));
  const { rows } = await insertEvent(
    db,
    deliveryId,
    e.at,
    e.kind,
    e.outcome,
    e.code,
    JSON.stringify(e.detail),
  );
  const written = rows[0];
  if (!written) throw new Error('delivery event not written');
  await appendAudit(db, { ...e, at: Number(written.at), deliveryId });
}

export async function timelineOf(db: Db, deliveryId: string): Promise<TimelineEntry[]> {
  const rows = await db
    .selectFrom('delivery_events')
    .selectAll()
    .where('delivery_id', '=', deliveryId)
    .orderBy('seq')
    .execute();
  return rows.map((r) => ({
    seq: Number(r.seq),
    at: Number(r.at),
    kind: r.kind,
    outcome: r.outcome as TimelineEntry['outcome'],
    code: r.code,
    detail: JSON.parse(r.detail) as Record<string, unknown>,
  }));
}

export interface CommandRecord {
  id: string;
  deliveryId: string;
  vin: string;
  action: string;
  jti: string;
  tokenHash: string;
  /** not_executed: a fresh state answer showed the command had no effect (PROTOCOL.md §6.2). */
  status: 'sent' | 'executed' | 'refused' | 'timeout' | 'not_executed';
  reason: string | null;
  issuedAt: number;
  expiresAt: number;
  ackedAt: number | null;
}

const insertCommandRow = prepared(
  (
    db,
    id: string,
    deliveryId: string,
    vin: string,
    action: string,
    jti: string,
    tokenHash: string,
    status: string,
    reason: string | null,
    issuedAt: number,
    expiresAt: number,
    ackedAt: number | null,
  ) =>
    db.insertInto('commands').values({
      id,
      delivery_id: deliveryId,
      vin,
      action,
      jti,
      token_hash: tokenHash,
      status,
      reason,
      issued_at: issuedAt,
      expires_at: expiresAt,
      acked_at: ackedAt,
    }),
);

export async function insertCommand(db: Db, c: CommandRecord): Promise<void> {
  await insertCommandRow(
    db,
    c.id,
    c.deliveryId,
    c.vin,
    c.action,
    c.jti,
    c.tokenHash,
    c.status,
    c.reason,
    c.issuedAt,
    c.expiresAt,
    c.ackedAt,
  );
}

const updateCommandSettlement = prepared(
  (db, id: string, status: string, reason: string | null, ackedAt: number | null) =>
    db.updateTable('commands').set({ status, reason, acked_at: ackedAt }).where('id', '=', id),
);

export async function settleCommand(
  db: Db,
  id: string,
  s: { status: CommandRecord['status']; reason: string | null; ackedAt: number | null },
): Promise<void> {
  await updateCommandSettlement(db, id, s.status, s.reason, s.ackedAt);
}

/** A verified ack as kept: what the car signed, the signature, and which certificate it verified against. */
export interface VehicleAckRecord {
  commandId: string;
  vin: string;
  deliveryId: string | null;
  action: string;
  outcome: 'executed' | 'refused';
  reason: string | null;
  locked: boolean;
  carAt: number | null;
  /** The canonical ack the signature covers. */
  payload: string;
  sig: string;
  certSha256: string;
  receivedAt: number;
}

const insertVehicleAckRow = prepared(
  (
    db,
    commandId: string,
    vin: string,
    deliveryId: string | null,
    action: string,
    outcome: string,
    reason: string | null,
    locked: number,
    carAt: number | null,
    payload: string,
    sig: string,
    certSha256: string,
    receivedAt: number,
  ) =>
    db
      .insertInto('vehicle_acks')
      .values({
        command_id: commandId,
        vin,
        delivery_id: deliveryId,
        action,
        outcome,
        reason,
        locked,
        car_at: carAt,
        payload,
        sig,
        cert_sha256: certSha256,
        received_at: receivedAt,
      })
      // One ack per command: a second copy (a QoS 1 duplicate) adds nothing.
      .onConflict((oc) => oc.column('command_id').doNothing()),
);

export async function insertVehicleAck(db: Db, a: VehicleAckRecord): Promise<void> {
  await insertVehicleAckRow(
    db,
    a.commandId,
    a.vin,
    a.deliveryId,
    a.action,
    a.outcome,
    a.reason,
    a.locked ? 1 : 0,
    a.carAt,
    a.payload,
    a.sig,
    a.certSha256,
    a.receivedAt,
  );
}

export async function findVehicleAck(db: Db, commandId: string): Promise<VehicleAckRecord | null> {
  const r = await db
    .selectFrom('vehicle_acks')
    .selectAll()
    .where('command_id', '=', commandId)
    .executeTakeFirst();
  if (!r) return null;
  return {
    commandId: r.command_id,
    vin: r.vin,
    deliveryId: r.delivery_id,
    action: r.action,
    outcome: r.outcome as VehicleAckRecord['outcome'],
    reason: r.reason,
    locked: r.locked === 1,
    carAt: r.car_at === null ? null : Number(r.car_at),
    payload: r.payload,
    sig: r.sig,
    certSha256: r.cert_sha256,
    receivedAt: Number(r.received_at),
  };
}

export async function countApiKeys(db: Db): Promise<number> {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

export async function insertApiKey(
  db: Db,
  k: { id: string; hash: string; label: string; createdAt: number },
): Promise<void> {
  await db
    .insertInto('api_keys')
    .values({ id: k.id, hash: k.hash, label: k.label, created_at: k.createdAt })
    .execute();
}

export async function findApiKeyByHash(db: Db, hash: string): Promise<{ id: string; label: string } | null> {
  const row = await db
    .selectFrom('api_keys')
    .select(['id', 'label'])
    .where('hash', '=', hash)
    .executeTakeFirst();
  return row ?? null;
}

export async function countOnlineVehicles(db: Db): Promise<number> {
  const row = await db
    .selectFrom('vehicles')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('online', '=', 1)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

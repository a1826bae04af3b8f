// Owns reading and writing the store's rows as domain records; every function takes a db or a transaction.
import type { Kysely, Transaction } from 'kysely';
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
}

export interface LocationRecord {
  id: string;
  ownerId: string;
  label: string;
  kind: string;
  lat: number;
  lon: number;
  radiusM: number;
  createdAt: number;
}

export type DeliveryStatus = 'scheduled' | 'unlocked' | 'completed' | 'failed' | 'cancelled';

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
  /** The carrier whose backend scheduled it; null when an unbound key scheduled it without one. */
  carrierId?: string | null;
}

export interface TimelineEntry {
  seq: number;
  at: number;
  kind: string;
  outcome: 'granted' | 'denied' | 'info';
  code: string | null;
  detail: Record<string, unknown>;
}

const toVehicle = (r: VehiclesTable): VehicleRecord => ({
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
});

const toLocation = (r: LocationsTable): LocationRecord => ({
  id: r.id,
  ownerId: r.owner_id,
  label: r.label,
  kind: r.kind,
  lat: r.lat,
  lon: r.lon,
  radiusM: r.radius_m,
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
  carrierId: r.carrier_id ?? null,
});

export async function insertVehicle(
  db: Db,
  v: Omit<
    VehicleRecord,
    'online' | 'locked' | 'position' | 'ignition' | 'doorsOpen' | 'lastSeen' | 'lastSeq'
  >,
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
    })
    .execute();
}

export async function findVehicle(db: Db, vin: string): Promise<VehicleRecord | null> {
  const row = await db.selectFrom('vehicles').selectAll().where('vin', '=', vin).executeTakeFirst();
  return row ? toVehicle(row) : null;
}

export async function listVehicles(db: Db): Promise<VehicleRecord[]> {
  const rows = await db.selectFrom('vehicles').selectAll().orderBy('linked_at').orderBy('vin').execute();
  return rows.map(toVehicle);
}

export interface ObservedState {
  online: boolean;
  locked?: boolean;
  position?: { lat: number; lon: number };
  ignition?: string;
  doorsOpen?: boolean;
  seenAt: number;
  seq?: number;
}

/** Records what a car reported (MQTT keeps one client's QoS 1 messages in order, so the last one wins). */
export async function recordVehicleState(db: Db, vin: string, s: ObservedState): Promise<void> {
  await db
    .updateTable('vehicles')
    .set({
      online: s.online ? 1 : 0,
      last_seen: s.seenAt,
      ...(s.locked === undefined ? {} : { locked: s.locked ? 1 : 0 }),
      ...(s.position ? { lat: s.position.lat, lon: s.position.lon } : {}),
      ...(s.ignition === undefined ? {} : { ignition: s.ignition }),
      ...(s.doorsOpen === undefined ? {} : { doors_open: s.doorsOpen ? 1 : 0 }),
      ...(s.seq === undefined ? {} : { last_seq: s.seq }),
    })
    .where('vin', '=', vin)
    .execute();
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
      carrier_id: d.carrierId ?? null,
    })
    .execute();
}

export async function findDelivery(db: Db, id: string): Promise<DeliveryRecord | null> {
  const row = await db.selectFrom('deliveries').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? toDelivery(row) : null;
}

export async function updateDelivery(
  db: Db,
  id: string,
  patch: { status?: DeliveryStatus; unlocksUsed?: number; updatedAt: number },
): Promise<void> {
  await db
    .updateTable('deliveries')
    .set({
      updated_at: patch.updatedAt,
      ...(patch.status ? { status: patch.status } : {}),
      ...(patch.unlocksUsed === undefined ? {} : { unlocks_used: patch.unlocksUsed }),
    })
    .where('id', '=', id)
    .execute();
}

export async function appendEvent(db: Db, deliveryId: string, e: Omit<TimelineEntry, 'seq'>): Promise<void> {
  await db
    .insertInto('delivery_events')
    .values({
      delivery_id: deliveryId,
      at: e.at,
      kind: e.kind,
      outcome: e.outcome,
      code: e.code,
      detail: JSON.stringify(e.detail),
    })
    .execute();
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
  status: 'sent' | 'executed' | 'refused' | 'timeout';
  reason: string | null;
  issuedAt: number;
  expiresAt: number;
  ackedAt: number | null;
}

export async function insertCommand(db: Db, c: CommandRecord): Promise<void> {
  await db
    .insertInto('commands')
    .values({
      id: c.id,
      delivery_id: c.deliveryId,
      vin: c.vin,
      action: c.action,
      jti: c.jti,
      token_hash: c.tokenHash,
      status: c.status,
      reason: c.reason,
      issued_at: c.issuedAt,
      expires_at: c.expiresAt,
      acked_at: c.ackedAt,
    })
    .execute();
}

export async function settleCommand(
  db: Db,
  id: string,
  s: { status: CommandRecord['status']; reason: string | null; ackedAt: number | null },
): Promise<void> {
  await db
    .updateTable('commands')
    .set({ status: s.status, reason: s.reason, acked_at: s.ackedAt })
    .where('id', '=', id)
    .execute();
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

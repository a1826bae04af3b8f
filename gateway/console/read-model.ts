// Owns what the console reads: vehicles, locations, deliveries with their timelines and webhook deliveries, each
// narrowed in SQL to a key's binding (the access checks then decide per record) and shaped for the page.
import type { Caller } from '../access/api-keys.ts';
import type { Db } from '../store/db.ts';
import { timelinesOf } from '../store/timeline.ts';
import type { ConsoleDelivery, ConsoleLocation, ConsoleVehicle, ConsoleWebhookDelivery } from './schemas.ts';

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(Number(ms)));

/** SQLite allows 32,766 bound values per statement; lists are read in slices well below it. */
const SLICE = 500;

async function inSlices<T, R>(items: readonly T[], read: (slice: T[]) => Promise<R[]>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += SLICE) out.push(...(await read(items.slice(i, i + SLICE))));
  return out;
}

/** Who a record is narrowed to in SQL; null when the key is unbound (an admin or an unbound reviewer). */
const bindingOf = (caller: Caller): { ownerId: string } | { carrierId: string } | null =>
  caller.ownerId !== null
    ? { ownerId: caller.ownerId }
    : caller.carrierId !== null
      ? { carrierId: caller.carrierId }
      : null;

export interface VehicleRow extends ConsoleVehicle {
  /** Unlinked vehicles keep their row; the console shows only linked ones. */
  linked: boolean;
}

const VEHICLE_COLUMNS = [
  'vin',
  'make',
  'model',
  'year',
  'provider',
  'owner_id',
  'blocked',
  'online',
  'locked',
  'doors_open',
  'ignition',
  'lat',
  'lon',
  'last_seen',
  'unlinked_at',
] as const;

type VehicleColumns = {
  vin: string;
  make: string;
  model: string;
  year: number;
  provider: string;
  owner_id: string;
  blocked: number;
  online: number;
  locked: number | null;
  doors_open: number | null;
  ignition: string | null;
  lat: number | null;
  lon: number | null;
  last_seen: number | null;
  unlinked_at: number | null;
};

/** Six decimals of a degree are 0.1 m: finer digits only lengthen a list of ten thousand cars. */
const micro = (deg: number): number => Math.round(deg * 1e6) / 1e6;

const toVehicle = (r: VehicleColumns): VehicleRow => ({
  vin: r.vin,
  make: r.make,
  model: r.model,
  year: Number(r.year),
  provider: r.provider,
  ownerId: r.owner_id,
  blocked: r.blocked === 1,
  online: r.online === 1,
  locked: r.locked === null ? null : r.locked === 1,
  doorsOpen: r.doors_open === null ? null : r.doors_open === 1,
  ignition: r.ignition,
  position: r.lat === null || r.lon === null ? null : { lat: micro(r.lat), lon: micro(r.lon) },
  lastSeen: isoOrNull(r.last_seen),
  linked: r.unlinked_at === null,
});

/** Linked vehicles, of the key's owner when it is bound to one (a carrier's key is refused before: no scope). */
export async function listConsoleVehicles(db: Db, caller: Caller): Promise<VehicleRow[]> {
  let q = db.selectFrom('vehicles').select(VEHICLE_COLUMNS).where('unlinked_at', 'is', null);
  if (caller.ownerId !== null) q = q.where('owner_id', '=', caller.ownerId);
  return (await q.orderBy('vin').execute()).map(toVehicle);
}

export async function readVehicles(db: Db, vins: readonly string[]): Promise<VehicleRow[]> {
  return inSlices(vins, async (slice) =>
    (await db.selectFrom('vehicles').select(VEHICLE_COLUMNS).where('vin', 'in', slice).execute()).map(
      toVehicle,
    ),
  );
}

export async function listConsoleLocations(db: Db, caller: Caller): Promise<ConsoleLocation[]> {
  return readLocations(db, caller.ownerId === null ? [] : [caller.ownerId], caller.ownerId === null);
}

/** The locations of these owners (of everyone with `all`). */
export async function readLocations(
  db: Db,
  owners: readonly string[],
  all = false,
): Promise<ConsoleLocation[]> {
  if (!all && owners.length === 0) return [];
  let q = db.selectFrom('locations').select(['id', 'owner_id', 'label', 'lat', 'lon', 'radius_m']);
  if (!all) q = q.where('owner_id', 'in', [...owners]);
  const rows = await q.orderBy('created_at').orderBy('id').execute();
  return rows.map((r) => ({
    id: r.id,
    ownerId: r.owner_id,
    label: r.label,
    lat: r.lat,
    lon: r.lon,
    radiusM: r.radius_m,
  }));
}

export interface DeliveryRow extends ConsoleDelivery {
  /** The vehicle's owner, for canSeeDelivery; not sent. */
  ownerId: string;
}

/** Deliveries that may still change: the ones a car's report can touch. */
const OPEN_STATUSES = ['scheduled', 'unlocked', 'relocked'];

const deliveryQuery = (db: Db) =>
  db
    .selectFrom('deliveries as d')
    .innerJoin('vehicles as v', 'v.vin', 'd.vin')
    .leftJoin('locations as l', 'l.id', 'd.location_id')
    .select([
      'd.id',
      'd.vin',
      'd.carrier_id',
      'd.driver_id',
      'd.status',
      'd.blocked',
      'd.window_start',
      'd.window_end',
      'd.created_at',
      'd.updated_at',
      'v.owner_id',
      'l.id as location_id',
      'l.label as location_label',
      'l.lat as location_lat',
      'l.lon as location_lon',
      'l.radius_m as location_radius_m',
    ]);

type DeliveryColumns = Awaited<ReturnType<ReturnType<typeof deliveryQuery>['execute']>>[number];

async function withTimelines(db: Db, rows: DeliveryColumns[]): Promise<DeliveryRow[]> {
  const timelines = new Map<string, ConsoleDelivery['timeline']>();
  for (let i = 0; i < rows.length; i += SLICE) {
    const slice = rows.slice(i, i + SLICE).map((r) => r.id);
    for (const [id, events] of await timelinesOf(db, slice)) {
      timelines.set(
        id,
        events.map((e) => ({ seq: e.seq, at: iso(e.at), kind: e.kind, outcome: e.outcome, code: e.code })),
      );
    }
  }
  return rows.map((r) => ({
    id: r.id,
    vin: r.vin,
    carrierId: r.carrier_id ?? null,
    driverId: r.driver_id,
    status: r.status,
    blocked: r.blocked === 1,
    window: { start: iso(Number(r.window_start)), end: iso(Number(r.window_end)) },
    createdAt: iso(Number(r.created_at)),
    updatedAt: iso(Number(r.updated_at)),
    location:
      r.location_id === null ||
      r.location_label === null ||
      r.location_lat === null ||
      r.location_lon === null ||
      r.location_radius_m === null
        ? null
        : {
            id: r.location_id,
            label: r.location_label,
            lat: r.location_lat,
            lon: r.location_lon,
            radiusM: r.location_radius_m,
          },
    timeline: timelines.get(r.id) ?? [],
    ownerId: r.owner_id,
  }));
}

/** The most recent deliveries the key's binding names (its carrier's, or into its owner's cars), newest first. */
export async function listConsoleDeliveries(db: Db, caller: Caller, limit: number): Promise<DeliveryRow[]> {
  let q = deliveryQuery(db);
  const binding = bindingOf(caller);
  if (binding && 'carrierId' in binding) q = q.where('d.carrier_id', '=', binding.carrierId);
  if (binding && 'ownerId' in binding) q = q.where('v.owner_id', '=', binding.ownerId);
  const rows = await q.orderBy('d.created_at', 'desc').orderBy('d.id', 'desc').limit(limit).execute();
  return withTimelines(db, rows);
}

/** These deliveries, and the open ones of these vehicles. */
export async function readDeliveries(
  db: Db,
  of: { ids: readonly string[]; openOfVins: readonly string[] },
): Promise<DeliveryRow[]> {
  const byId = await inSlices(of.ids, (slice) => deliveryQuery(db).where('d.id', 'in', slice).execute());
  const open = await inSlices(of.openOfVins, (slice) =>
    deliveryQuery(db).where('d.vin', 'in', slice).where('d.status', 'in', OPEN_STATUSES).execute(),
  );
  const rows = new Map([...byId, ...open].map((r) => [r.id, r]));
  return withTimelines(db, [...rows.values()]);
}

export interface WebhookDeliveryRow extends ConsoleWebhookDelivery {
  /** The subscription's owner and carrier, for canSeeWebhook; not sent. */
  subscriber: { ownerId: string | null; carrierId: string | null };
}

const originOf = (url: string): string => {
  try {
    return new URL(url).origin;
  } catch {
    return 'invalid-url';
  }
};

const outboxQuery = (db: Db) =>
  db
    .selectFrom('webhook_outbox as o')
    .innerJoin('webhooks as w', 'w.id', 'o.webhook_id')
    .select([
      'o.id',
      'o.event_id',
      'o.event_type',
      'o.webhook_id',
      'o.payload',
      'o.status',
      'o.attempts',
      'o.last_error',
      'o.next_attempt_at',
      'o.created_at',
      'o.delivered_at',
      'w.url',
      'w.owner_id',
      'w.carrier_id',
    ]);

type OutboxColumns = Awaited<ReturnType<ReturnType<typeof outboxQuery>['execute']>>[number];

function toWebhookDelivery(r: OutboxColumns): WebhookDeliveryRow {
  let event: { deliveryId?: unknown; vin?: unknown } = {};
  try {
    event = JSON.parse(r.payload) as typeof event;
  } catch {
    // A payload is written by the outbox as JSON; anything else shows without its delivery and vehicle.
  }
  return {
    id: r.id,
    eventId: r.event_id,
    eventType: r.event_type,
    webhookId: r.webhook_id,
    origin: originOf(r.url),
    deliveryId: typeof event.deliveryId === 'string' ? event.deliveryId : null,
    vin: typeof event.vin === 'string' ? event.vin : null,
    status: r.status as ConsoleWebhookDelivery['status'],
    attempts: Number(r.attempts),
    lastError: r.last_error,
    nextAttemptAt: iso(Number(r.next_attempt_at)),
    createdAt: iso(Number(r.created_at)),
    deliveredAt: isoOrNull(r.delivered_at),
    subscriber: { ownerId: r.owner_id, carrierId: r.carrier_id },
  };
}

/** The most recent webhook deliveries of the key's own subscriptions (of all, for an unbound key). */
export async function listConsoleWebhookDeliveries(
  db: Db,
  caller: Caller,
  limit: number,
): Promise<WebhookDeliveryRow[]> {
  let q = outboxQuery(db);
  const binding = bindingOf(caller);
  if (binding && 'carrierId' in binding) q = q.where('w.carrier_id', '=', binding.carrierId);
  if (binding && 'ownerId' in binding) q = q.where('w.owner_id', '=', binding.ownerId);
  const rows = await q.orderBy('o.created_at', 'desc').orderBy('o.id', 'desc').limit(limit).execute();
  return rows.map(toWebhookDelivery);
}

export async function readWebhookDeliveries(db: Db, ids: readonly string[]): Promise<WebhookDeliveryRow[]> {
  return inSlices(ids, async (slice) =>
    (await outboxQuery(db).where('o.id', 'in', slice).execute()).map(toWebhookDelivery),
  );
}

/** Drops the fields a record carries only for the access checks. */
export function publicVehicle({ linked: _, ...v }: VehicleRow): ConsoleVehicle {
  return v;
}
export function publicDelivery({ ownerId: _, ...d }: DeliveryRow): ConsoleDelivery {
  return d;
}
export function publicWebhookDelivery({ subscriber: _, ...w }: WebhookDeliveryRow): ConsoleWebhookDelivery {
  return w;
}

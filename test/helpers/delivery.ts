// Test harness: one whole delivery through the HTTP API (link, location, schedule, unlock, lock), as a proof of service,
// and its set-up steps on their own.
import type { SeedLocation, SeedVehicle } from '../../seeds/index.ts';
import type { Stack } from './stack.ts';

export interface DeliveryRun {
  unlock: number;
  lock: number;
  status: string;
  lockedAfter: boolean;
}

/** The driver every helper delivery is assigned to, and the one package it carries. */
export const DRIVER_ID = 'driver-7';
export const PACKAGE_ID = 'pkg-1';

/** Links the seeded car unless it is linked already. */
export async function linkSeeded(stack: Stack, vin: string): Promise<SeedVehicle> {
  const vehicle = stack.seeds.vehicles.find((v) => v.vin === vin);
  if (!vehicle) throw new Error(`no seeded vehicle ${vin}`);
  const linked = await stack.request('GET', `/v1/vehicles/${vin}`);
  if (linked.status === 404) {
    const created = await stack.request('POST', '/v1/vehicles', {
      vin,
      make: vehicle.make,
      model: vehicle.model,
      year: vehicle.year,
      provider: vehicle.provider,
      ownerId: vehicle.ownerId,
      consent: ['unlock', 'lock'],
    });
    if (created.status !== 201)
      throw new Error(`link ${vin}: ${created.status} ${JSON.stringify(created.body)}`);
  }
  return vehicle;
}

/** Registers the owner's seeded location (public, 200 m) and returns its id with the seed. */
export async function registerSeededLocation(
  stack: Stack,
  ownerId: string,
): Promise<{ id: string; location: SeedLocation }> {
  const location = stack.seeds.locations.find((l) => l.ownerId === ownerId);
  if (!location) throw new Error(`no seeded location for ${ownerId}`);
  const loc = await stack.request('POST', '/v1/locations', {
    ownerId: location.ownerId,
    label: location.label,
    kind: location.kind,
    lat: location.lat,
    lon: location.lon,
    radiusM: 200,
    access: 'public',
  });
  return { id: loc.body.id as string, location };
}

/** Schedules a delivery open from a minute ago for an hour, and has the car confirm it is parked there. */
export async function scheduleParked(stack: Stack, vin: string, locationId: string): Promise<string> {
  const now = Date.now();
  const delivery = await stack.request('POST', '/v1/deliveries', {
    vin,
    locationId,
    driverId: DRIVER_ID,
    packageIds: [PACKAGE_ID],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  const id = delivery.body.id as string;
  // The car confirms it is parked at the location before anything opens (PROTOCOL.md §3.5).
  await stack.request('POST', `/v1/deliveries/${id}/parking`);
  return id;
}

/** The courier's unlock, a few metres from the location. */
export const unlockAt = (stack: Stack, id: string, location: SeedLocation) =>
  stack.request('POST', `/v1/deliveries/${id}/unlock`, {
    driverId: DRIVER_ID,
    position: { lat: location.lat + 0.0003, lon: location.lon },
    packageId: PACKAGE_ID,
  });

export const lockBy = (stack: Stack, id: string) =>
  stack.request('POST', `/v1/deliveries/${id}/lock`, { driverId: DRIVER_ID });

/** Links the car on first use, then runs a delivery to it and reports each step's HTTP status. */
export async function runDelivery(stack: Stack, vin: string): Promise<DeliveryRun> {
  const vehicle = await linkSeeded(stack, vin);
  const { id: locationId, location } = await registerSeededLocation(stack, vehicle.ownerId);
  const id = await scheduleParked(stack, vin, locationId);
  const unlock = await unlockAt(stack, id, location);
  const lock = await lockBy(stack, id);
  const view = await stack.request('GET', `/v1/deliveries/${id}`);
  return {
    unlock: unlock.status,
    lock: lock.status,
    status: view.body.status,
    lockedAfter: stack.fleet.car(vin).car.snapshot().locked,
  };
}

/** What runDelivery returns when everything worked. */
export const COMPLETED: DeliveryRun = { unlock: 200, lock: 200, status: 'completed', lockedAfter: true };

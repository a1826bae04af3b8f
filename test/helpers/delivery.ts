// Test harness: one whole delivery through the HTTP API (link, location, schedule, unlock, lock), as a proof of service.
import type { SeedVehicle } from '../../seeds/index.ts';
import type { Stack } from './stack.ts';

export interface DeliveryRun {
  unlock: number;
  lock: number;
  status: string;
  lockedAfter: boolean;
}

/** Links the car on first use, then runs a delivery to it and reports each step's HTTP status. */
export async function runDelivery(stack: Stack, vin: string): Promise<DeliveryRun> {
  const vehicle = stack.seeds.vehicles.find((v) => v.vin === vin) as SeedVehicle;
  const location = stack.seeds.locations.find((l) => l.ownerId === vehicle.ownerId);
  if (!location) throw new Error(`no seeded location for ${vehicle.ownerId}`);
  const linked = await stack.request('GET', `/v1/vehicles/${vin}`);
  if (linked.status === 404) {
    const created = await stack.request('POST', '/v1/vehicles', {
      vin,
      make: vehicle.make,
      model: vehicle.model,
      year: vehicle.year,
      provider: vehicle.provider,
      ownerId: vehicle.ownerId,
    });
    if (created.status !== 201)
      throw new Error(`link ${vin}: ${created.status} ${JSON.stringify(created.body)}`);
  }
  const loc = await stack.request('POST', '/v1/locations', {
    ownerId: location.ownerId,
    label: location.label,
    kind: location.kind,
    lat: location.lat,
    lon: location.lon,
    radiusM: 200,
    access: 'public',
  });
  const now = Date.now();
  const delivery = await stack.request('POST', '/v1/deliveries', {
    vin,
    locationId: loc.body.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  const id = delivery.body.id as string;
  // The car confirms it is parked at the location before anything opens (PROTOCOL.md §3.5).
  await stack.request('POST', `/v1/deliveries/${id}/parking`);
  const unlock = await stack.request('POST', `/v1/deliveries/${id}/unlock`, {
    driverId: 'driver-7',
    position: { lat: location.lat + 0.0003, lon: location.lon },
    packageId: 'pkg-1',
  });
  const lock = await stack.request('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' });
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

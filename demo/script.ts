// Owns the scripted demo delivery: a backend's view of one whole delivery over the HTTP API, printed as a timeline.
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';

export interface DemoDeps {
  baseUrl: string;
  apiKey: string;
  vehicle: SeedVehicle;
  location: SeedLocation;
  print: (line: string) => void;
  now?: () => number;
  /**
   * Asked before each command to the car: why the demo must leave the car alone (another delivery has it
   * open, and the demo's lock would close it for that one), or null to go on.
   */
  carInUse?: (vin: string, ownDeliveryId: string) => Promise<string | null>;
}

export type DemoErrorCode = 'DEMO_STEP_FAILED' | 'DEMO_CAR_IN_USE';

/** The demo stopped: a step did not answer as scripted, or the car was in use by another delivery. */
export class DemoError extends Error {
  readonly code: DemoErrorCode;
  constructor(code: DemoErrorCode, message: string) {
    super(message);
    this.name = 'DemoError';
    this.code = code;
  }
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Plays link → location → delivery → parking confirmation → unlock → lock against a running gateway; returns
 * the delivery id. It links the car itself, so it is meant for a store where the car was never linked: on any
 * other it stops at the link (409) rather than link again a car its owner unlinked. Throws DemoError.
 */
export async function playDemoDelivery(deps: DemoDeps): Promise<string> {
  const now = deps.now ?? Date.now;
  const call = async (method: string, path: string, body?: unknown): Promise<Reply> => {
    const res = await fetch(`${deps.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${deps.apiKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const step = (label: string, r: Reply): Reply => {
    const code = typeof r.body.code === 'string' ? ` ${r.body.code}` : '';
    deps.print(`  ${label.padEnd(44)} → ${r.status}${code}`);
    return r;
  };
  const must = (label: string, r: Reply, ok: number): Reply => {
    step(label, r);
    if (r.status !== ok) {
      const code = typeof r.body.code === 'string' ? r.body.code : JSON.stringify(r.body);
      throw new DemoError('DEMO_STEP_FAILED', `"${label}" answered ${r.status} ${code}`);
    }
    return r;
  };
  const leaveAloneIfInUse = async (deliveryId: string): Promise<void> => {
    const reason = await deps.carInUse?.(deps.vehicle.vin, deliveryId);
    if (reason) throw new DemoError('DEMO_CAR_IN_USE', `the car is left alone: ${reason}`);
  };

  const { vehicle: v, location: l } = deps;
  deps.print(`\nDemo delivery into a ${v.year} ${v.make} ${v.model} (${v.vin}, ${v.provider})`);
  must(
    'link vehicle (owner consents: unlock, lock)',
    await call('POST', '/v1/vehicles', {
      vin: v.vin,
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      ownerId: v.ownerId,
      // Always explicit: the owner's consent is what every later unlock rests on.
      consent: ['unlock', 'lock'],
    }),
    201,
  );
  const loc = must(
    'register location',
    await call('POST', '/v1/locations', {
      ownerId: l.ownerId,
      label: l.label,
      kind: l.kind,
      access: l.access,
      lat: l.lat,
      lon: l.lon,
      radiusM: l.radiusM,
    }),
    201,
  );
  const t = now();
  const delivery = must(
    'schedule delivery (window start only: 4 h)',
    await call('POST', '/v1/deliveries', {
      vin: v.vin,
      locationId: loc.body.id,
      driverId: 'driver-7',
      packageIds: ['pkg-1001', 'pkg-1002'],
      window: { start: new Date(t - 60_000).toISOString() },
    }),
    201,
  );
  const id = delivery.body.id as string;
  const at = { lat: l.lat + 0.0002, lon: l.lon };
  const good = { driverId: 'driver-7', position: at, packageId: 'pkg-1001' };
  step('unlock before the parking is confirmed', await call('POST', `/v1/deliveries/${id}/unlock`, good));
  must(
    'confirm parking (the car reports itself)',
    await call('POST', `/v1/deliveries/${id}/parking`, {}),
    200,
  );
  step(
    'unlock by the wrong driver',
    await call('POST', `/v1/deliveries/${id}/unlock`, {
      driverId: 'driver-9',
      position: at,
      packageId: 'pkg-1001',
    }),
  );
  step(
    'unlock from 3 km away',
    await call('POST', `/v1/deliveries/${id}/unlock`, {
      driverId: 'driver-7',
      position: { lat: l.lat + 0.027, lon: l.lon },
      packageId: 'pkg-1001',
    }),
  );
  await leaveAloneIfInUse(id);
  must(
    'unlock: right driver, place and package',
    await call('POST', `/v1/deliveries/${id}/unlock`, good),
    200,
  );
  const seen = must('read the car state', await call('GET', `/v1/vehicles/${v.vin}`), 200);
  deps.print(`    car online=${String(seen.body.online)} locked=${String(seen.body.locked)}`);
  await leaveAloneIfInUse(id);
  must(
    'lock after leaving the package',
    await call('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' }),
    200,
  );
  const final = must('read the timeline', await call('GET', `/v1/deliveries/${id}`), 200);

  deps.print(`\nTimeline of ${id} (status ${String(final.body.status)}):`);
  for (const e of final.body.timeline as Array<Record<string, unknown>>) {
    const code = e.code ? ` ${String(e.code)}` : '';
    deps.print(`  ${String(e.at)}  ${String(e.outcome).padEnd(7)} ${String(e.kind)}${code}`);
  }
  return id;
}

export interface ConsoleFleetDeps {
  baseUrl: string;
  apiKey: string;
  vehicles: SeedVehicle[];
  locations: SeedLocation[];
}

/**
 * Links every simulated car that is not linked yet, each with its owner's consent to unlock and lock, and registers
 * the owner's seeded location with it, so that the console has the whole fleet to show. Returns the VINs linked.
 */
export async function linkFleetForConsole(deps: ConsoleFleetDeps): Promise<string[]> {
  const post = (path: string, body: unknown) =>
    fetch(`${deps.baseUrl}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${deps.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const linked: string[] = [];
  const owners = new Set<string>();
  for (const v of deps.vehicles) {
    const res = await post('/v1/vehicles', {
      vin: v.vin,
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      ownerId: v.ownerId,
      consent: ['unlock', 'lock'],
    });
    await res.body?.cancel();
    // 409 VEHICLE_ALREADY_LINKED: an earlier start linked it, with its location.
    if (res.status !== 201) continue;
    linked.push(v.vin);
    owners.add(v.ownerId);
  }
  for (const l of deps.locations) {
    if (!owners.has(l.ownerId)) continue;
    owners.delete(l.ownerId);
    const res = await post('/v1/locations', {
      ownerId: l.ownerId,
      label: l.label,
      kind: l.kind,
      access: l.access,
      lat: l.lat,
      lon: l.lon,
      radiusM: l.radiusM,
    });
    await res.body?.cancel();
  }
  return linked;
}

// Owns the scripted demo delivery: a backend's view of one whole delivery over the HTTP API, printed as a timeline.
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';

export interface DemoDeps {
  baseUrl: string;
  apiKey: string;
  vehicle: SeedVehicle;
  location: SeedLocation;
  print: (line: string) => void;
  now?: () => number;
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Plays link → location → delivery → parking confirmation → unlock → lock against a running gateway; returns
 * the delivery id.
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
    if (r.status !== ok) throw new Error(`demo step failed: ${label}: ${r.status} ${JSON.stringify(r.body)}`);
    return r;
  };

  const { vehicle: v, location: l } = deps;
  deps.print(`\nDemo delivery into a ${v.year} ${v.make} ${v.model} (${v.vin}, ${v.provider})`);
  const linked = await call('GET', `/v1/vehicles/${v.vin}`);
  if (linked.status === 404) {
    must(
      'link vehicle (owner consents: unlock, lock)',
      await call('POST', '/v1/vehicles', {
        vin: v.vin,
        make: v.make,
        model: v.model,
        year: v.year,
        provider: v.provider,
        ownerId: v.ownerId,
      }),
      201,
    );
  } else {
    step('vehicle already linked', linked);
  }
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
  must(
    'unlock: right driver, place and package',
    await call('POST', `/v1/deliveries/${id}/unlock`, good),
    200,
  );
  const seen = must('read the car state', await call('GET', `/v1/vehicles/${v.vin}`), 200);
  deps.print(`    car online=${String(seen.body.online)} locked=${String(seen.body.locked)}`);
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

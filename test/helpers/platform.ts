// Test harness: callers with scoped keys, and the steps of a delivery through the HTTP API as those callers.
import { expect } from 'vitest';
import { parseGrant } from '../../gateway/access/api-keys.ts';
import type { SeedVehicle } from '../../seeds/index.ts';
import type { Stack } from './stack.ts';

export interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read replies by shape and assert on them.
  body: any;
  headers: Record<string, string | string[] | number | undefined>;
}

export type Call = (
  method: 'GET' | 'POST' | 'DELETE',
  url: string,
  body?: unknown,
  headers?: Record<string, string>,
) => Promise<Reply>;

/** A caller holding a key made with these scopes (kinds or scope names) and binding. */
export async function callerWith(
  stack: Stack,
  scopes: string[],
  binding: { ownerId?: string; carrierId?: string } = {},
): Promise<Call> {
  const key = await stack.gateway.createApiKey(
    `test ${scopes.join(',')}`,
    parseGrant({ scopes, ...binding }),
  );
  return callWithKey(stack, key);
}

export function callWithKey(stack: Stack, key: string): Call {
  return async (method, url, body, headers = {}) => {
    const res = await stack.gateway.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${key}`, ...headers },
      ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
    });
    return {
      status: res.statusCode,
      body: res.body ? JSON.parse(res.body) : null,
      headers: res.headers,
    };
  };
}

export const vehicleOf = (stack: Stack, ownerId: string, index = 0): SeedVehicle =>
  stack.seeds.vehicles.filter((v) => v.ownerId === ownerId && v.year >= 2015 && v.make !== 'Ford')[
    index
  ] as SeedVehicle;

export async function link(call: Call, v: SeedVehicle): Promise<void> {
  const r = await call('POST', '/v1/vehicles', {
    vin: v.vin,
    make: v.make,
    model: v.model,
    year: v.year,
    provider: v.provider,
    ownerId: v.ownerId,
    consent: ['unlock', 'lock'],
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
}

/** A location at the car's own position, so an unlock there passes the location check. */
export async function locationAt(call: Call, v: SeedVehicle): Promise<string> {
  const r = await call('POST', '/v1/locations', {
    ownerId: v.ownerId,
    label: 'curb',
    kind: 'home',
    lat: v.position.lat,
    lon: v.position.lon,
    radiusM: 200,
    access: 'public',
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.id;
}

export const deliveryBody = (v: SeedVehicle, locationId: string, over: Record<string, unknown> = {}) => {
  const now = Date.now();
  return {
    vin: v.vin,
    locationId,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
    ...over,
  };
};

export const unlockBody = (v: SeedVehicle, over: Record<string, unknown> = {}) => ({
  driverId: 'driver-7',
  position: { lat: v.position.lat + 0.0002, lon: v.position.lon },
  packageId: 'pkg-1',
  ...over,
});

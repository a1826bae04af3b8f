// Scoped API keys and object-level authorization (OWASP API1, BOLA) across two owners and two carriers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrantError, parseGrant } from '../gateway/access/api-keys.ts';
import { commandTopic } from '../protocols/index.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import {
  type Call,
  callerWith,
  callWithKey,
  deliveryBody,
  link,
  locationAt,
  unlockBody,
  vehicleOf,
} from './helpers/platform.ts';
import { type Stack, startStack } from './helpers/stack.ts';

let stack: Stack;
let admin: Call;
let ada: SeedVehicle;
let ben: SeedVehicle;
const as: Record<string, Call> = {};
let d1: string; // acme's delivery into Ada's car
let d2: string; // zed's delivery into Ben's car

beforeAll(async () => {
  stack = await startStack();
  admin = callWithKey(stack, stack.apiKey);
  ada = vehicleOf(stack, 'owner-ada');
  ben = vehicleOf(stack, 'owner-ben');
  as.customerAda = await callerWith(stack, ['customer'], { ownerId: 'owner-ada' });
  as.customerBen = await callerWith(stack, ['customer'], { ownerId: 'owner-ben' });
  as.carrierAcme = await callerWith(stack, ['carrier'], { carrierId: 'carrier-acme' });
  as.carrierZed = await callerWith(stack, ['carrier'], { carrierId: 'carrier-zed' });
  as.driverAcme = await callerWith(stack, ['driver'], { carrierId: 'carrier-acme' });
  as.driverZed = await callerWith(stack, ['driver'], { carrierId: 'carrier-zed' });
  as.reviewerAda = await callerWith(stack, ['reviewer'], { ownerId: 'owner-ada' });
  as.reviewerAcme = await callerWith(stack, ['reviewer'], { carrierId: 'carrier-acme' });
  as.reviewerAll = await callerWith(stack, ['reviewer']);
  const c = as as Required<typeof as> & Record<string, Call>;
  await link(c.customerAda as Call, ada);
  await link(c.customerBen as Call, ben);
  const locAda = await locationAt(c.customerAda as Call, ada);
  const locBen = await locationAt(c.customerBen as Call, ben);
  const r1 = await (c.carrierAcme as Call)('POST', '/v1/deliveries', deliveryBody(ada, locAda));
  const r2 = await (c.carrierZed as Call)('POST', '/v1/deliveries', deliveryBody(ben, locBen));
  expect([r1.status, r2.status]).toEqual([201, 201]);
  expect([r1.body.carrierId, r2.body.carrierId]).toEqual(['carrier-acme', 'carrier-zed']);
  d1 = r1.body.id;
  d2 = r2.body.id;
});

afterAll(async () => {
  await stack?.close();
});

const call = (who: string): Call => {
  const c = as[who];
  if (!c) throw new Error(`no caller ${who}`);
  return c;
};

describe('scopes', () => {
  const cases: Array<[string, 'GET' | 'POST', () => string, unknown]> = [
    ['carrierAcme', 'POST', () => '/v1/vehicles', { vin: 'x' }],
    ['carrierAcme', 'GET', () => '/v1/vehicles', undefined],
    ['carrierAcme', 'POST', () => `/v1/deliveries/${d1}/unlock`, {}],
    ['customerAda', 'POST', () => '/v1/deliveries', {}],
    ['customerAda', 'POST', () => `/v1/deliveries/${d1}/lock`, { driverId: 'driver-7' }],
    ['customerAda', 'GET', () => `/v1/deliveries/${d1}`, undefined],
    ['driverAcme', 'GET', () => `/v1/deliveries/${d1}`, undefined],
    ['driverAcme', 'POST', () => '/v1/locations', {}],
    ['driverAcme', 'POST', () => '/v1/webhooks', {}],
    ['reviewerAll', 'POST', () => `/v1/deliveries/${d1}/unlock`, {}],
    ['reviewerAll', 'GET', () => `/v1/vehicles/${ada.vin}`, undefined],
    ['reviewerAll', 'GET', () => '/v1/webhooks', undefined],
  ];
  for (const [who, method, url, body] of cases) {
    it(`refuses ${who} on ${method} ${url.toString().replace(/^\(\) => /, '')} with 403 SCOPE_MISSING`, async () => {
      const r = await call(who)(method, url(), body);
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ code: 'SCOPE_MISSING', retryable: false, resolution: 'REAUTHENTICATE' });
      expect(r.body.requiredScopes.length).toBeGreaterThan(0);
    });
  }

  it('checks the scope before the body: an invalid body still gets 403, not 400', async () => {
    const r = await call('reviewerAll')('POST', '/v1/deliveries', { nonsense: true });
    expect(r.status).toBe(403);
  });

  it('lets each kind of caller do its own part', async () => {
    expect((await call('reviewerAda')('GET', `/v1/deliveries/${d1}`)).body.timeline.length).toBeGreaterThan(
      0,
    );
    expect((await call('carrierAcme')('GET', `/v1/deliveries/${d1}`)).status).toBe(200);
    expect((await call('customerAda')('GET', `/v1/vehicles/${ada.vin}`)).status).toBe(200);
    const unknownRoute = await call('customerAda')('GET', '/v1/nothing-here');
    expect(unknownRoute.status).toBe(404);
  });

  it('refuses a revoked key with 401', async () => {
    const key = await stack.gateway.createApiKey('to revoke', parseGrant({ scopes: ['reviewer'] }));
    const c = callWithKey(stack, key);
    expect((await c('GET', `/v1/deliveries/${d1}`)).status).toBe(200);
    await stack.gateway.store.db
      .updateTable('api_keys')
      .set({ revoked_at: Date.now() })
      .where('label', '=', 'to revoke')
      .execute();
    const r = await c('GET', `/v1/deliveries/${d1}`);
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('UNAUTHENTICATED');
  });

  it('keeps keys from before scopes existed (no scopes) out of every route', async () => {
    const key = 'ck_legacylegacylegacylegacy01';
    const { hashApiKey } = await import('../gateway/access/api-keys.ts');
    const { insertApiKey } = await import('../gateway/store/api-keys.ts');
    await insertApiKey(stack.gateway.store.db, {
      id: 'key_legacy',
      hash: hashApiKey(key),
      label: 'old',
      createdAt: 1,
    });
    const r = await callWithKey(stack, key)('GET', `/v1/deliveries/${d1}`);
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('SCOPE_MISSING');
  });
});

describe('object-level authorization (BOLA)', () => {
  /** The same status, code and members as for an id that does not exist: nothing tells them apart. */
  async function expectHidden(
    r: Promise<{ status: number; body: Record<string, unknown> }>,
    missing: Promise<{ status: number; body: Record<string, unknown> }>,
  ) {
    const [a, b] = await Promise.all([r, missing]);
    expect(a.status).toBe(404);
    expect(a.body.code).toBe('NOT_FOUND');
    expect(Object.keys(a.body).sort()).toEqual(Object.keys(b.body).sort());
    expect(b.status).toBe(404);
  }

  it("hides another carrier's delivery from a carrier, a driver backend and a bound reviewer", async () => {
    await expectHidden(
      call('carrierZed')('GET', `/v1/deliveries/${d1}`),
      call('carrierZed')('GET', '/v1/deliveries/dlv_nope'),
    );
    await expectHidden(
      call('carrierAcme')('GET', `/v1/deliveries/${d2}`),
      call('carrierAcme')('GET', '/v1/deliveries/dlv_nope'),
    );
    await expectHidden(
      call('reviewerAcme')('GET', `/v1/deliveries/${d2}`),
      call('reviewerAcme')('GET', '/v1/deliveries/dlv_nope'),
    );
    expect((await call('reviewerAcme')('GET', `/v1/deliveries/${d1}`)).status).toBe(200);
    expect((await call('reviewerAll')('GET', `/v1/deliveries/${d2}`)).status).toBe(200);
  });

  it("refuses a driver backend on another carrier's delivery, before any check or command", async () => {
    const before = stack.published.filter((p) => p.topic === commandTopic(ada.vin)).length;
    const timeline = (await admin('GET', `/v1/deliveries/${d1}`)).body.timeline.length;
    await expectHidden(
      call('driverZed')('POST', `/v1/deliveries/${d1}/unlock`, unlockBody(ada)),
      call('driverZed')('POST', '/v1/deliveries/dlv_nope/unlock', unlockBody(ada)),
    );
    await expectHidden(
      call('driverAcme')('POST', `/v1/deliveries/${d2}/lock`, { driverId: 'driver-7' }),
      call('driverAcme')('POST', '/v1/deliveries/dlv_nope/lock', { driverId: 'driver-7' }),
    );
    expect(stack.published.filter((p) => p.topic === commandTopic(ada.vin)).length).toBe(before);
    expect((await admin('GET', `/v1/deliveries/${d1}`)).body.timeline.length).toBe(timeline);
    expect(stack.fleet.car(ada.vin).car.snapshot().locked).toBe(true);
  });

  it("hides another owner's vehicle and deliveries into it", async () => {
    await expectHidden(
      call('customerBen')('GET', `/v1/vehicles/${ada.vin}`),
      call('customerBen')('GET', '/v1/vehicles/1G1ZE5ST5KF100999'),
    );
    await expectHidden(
      call('reviewerAda')('GET', `/v1/deliveries/${d2}`),
      call('reviewerAda')('GET', '/v1/deliveries/dlv_nope'),
    );
    const listed = await call('customerBen')('GET', '/v1/vehicles');
    expect(listed.body.vehicles.map((v: { vin: string }) => v.vin)).toEqual([ben.vin]);
    const all = await admin('GET', '/v1/vehicles');
    expect(all.body.vehicles.map((v: { vin: string }) => v.vin).sort()).toEqual([ada.vin, ben.vin].sort());
  });

  it('refuses to create records for another owner', async () => {
    const loc = await call('customerBen')('POST', '/v1/locations', {
      ownerId: 'owner-ada',
      label: 'x',
      lat: 47.6,
      lon: -122.3,
      access: 'public',
    });
    expect(loc.status).toBe(404);
    const other = vehicleOf(stack, 'owner-ada', 1);
    const linked = await call('customerBen')('POST', '/v1/vehicles', {
      vin: other.vin,
      make: other.make,
      model: other.model,
      year: other.year,
      provider: other.provider,
      ownerId: 'owner-ada',
      consent: ['unlock', 'lock'],
    });
    expect(linked.status).toBe(404);
    expect((await admin('GET', `/v1/vehicles/${other.vin}`)).status).toBe(404);
  });
});

describe('fields a caller may not set', () => {
  it('refuses carrierId from a key bound to a carrier (it comes from the key)', async () => {
    const locAda = await locationAt(call('customerAda'), ada);
    for (const carrierId of ['carrier-zed', 'carrier-acme']) {
      const r = await call('carrierAcme')('POST', '/v1/deliveries', deliveryBody(ada, locAda, { carrierId }));
      expect(r.status).toBe(400);
      expect(r.body).toMatchObject({ code: 'FIELD_NOT_ALLOWED', resolution: 'FIX_REQUEST' });
    }
  });

  it('lets an admin key name the carrier, which then sees it; without one only unbound keys do', async () => {
    const locAda = await locationAt(call('customerAda'), ada);
    const named = await admin(
      'POST',
      '/v1/deliveries',
      deliveryBody(ada, locAda, { carrierId: 'carrier-acme' }),
    );
    expect(named.body.carrierId).toBe('carrier-acme');
    expect((await call('carrierAcme')('GET', `/v1/deliveries/${named.body.id}`)).status).toBe(200);
    const none = await admin('POST', '/v1/deliveries', deliveryBody(ada, locAda));
    expect(none.body.carrierId).toBeNull();
    expect((await call('carrierAcme')('GET', `/v1/deliveries/${none.body.id}`)).status).toBe(404);
    expect((await call('reviewerAll')('GET', `/v1/deliveries/${none.body.id}`)).status).toBe(200);
  });

  const extra: Array<[string, 'unlock' | 'lock' | 'create', Record<string, unknown>]> = [
    ['vin on unlock', 'unlock', { vin: 'YV1A22MK3F1900345' }],
    ['act on unlock', 'unlock', { act: 'open_trunk' }],
    ['ttl on unlock', 'unlock', { ttl: 86_400 }],
    ['action on unlock', 'unlock', { action: 'remote_start' }],
    ['ttl on lock', 'lock', { ttl: 86_400 }],
    ['vin on lock', 'lock', { vin: 'YV1A22MK3F1900345' }],
    ['status on a new delivery', 'create', { status: 'completed' }],
    ['unlocksUsed on a new delivery', 'create', { unlocksUsed: -5 }],
  ];
  for (const [name, route, over] of extra) {
    it(`refuses ${name} with 400 VALIDATION_FAILED`, async () => {
      const before = stack.published.length;
      const r =
        route === 'create'
          ? await call('carrierAcme')('POST', '/v1/deliveries', { ...deliveryBody(ada, 'loc_x'), ...over })
          : await call('driverAcme')(
              'POST',
              `/v1/deliveries/${d1}/${route}`,
              route === 'unlock' ? unlockBody(ada, over) : { driverId: 'driver-7', ...over },
            );
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('VALIDATION_FAILED');
      expect(stack.published.length).toBe(before);
    });
  }
});

describe('grants', () => {
  it('expands caller kinds to their scope sets', () => {
    expect(parseGrant({ scopes: ['carrier'], carrierId: 'c' }).scopes).toEqual(['deliveries', 'webhooks']);
    expect(parseGrant({ scopes: ['driver'], carrierId: 'c' }).scopes).toEqual(['commands']);
    expect(parseGrant({ scopes: ['customer'], ownerId: 'o' }).scopes).toEqual([
      'vehicles',
      'locations',
      'parking',
      'blocking',
      'webhooks',
    ]);
    expect(parseGrant({ scopes: ['reviewer'] })).toEqual({
      scopes: ['timelines:read'],
      ownerId: null,
      carrierId: null,
    });
  });

  const bad: Array<[string, Parameters<typeof parseGrant>[0]]> = [
    ['no scope', { scopes: [] }],
    ['an unknown scope', { scopes: ['root'] }],
    ['deliveries without a carrier', { scopes: ['deliveries'] }],
    ['deliveries bound to an owner', { scopes: ['deliveries'], ownerId: 'o' }],
    ['vehicles bound to a carrier', { scopes: ['vehicles'], carrierId: 'c' }],
    ['carrier and customer in one key', { scopes: ['carrier', 'customer'], carrierId: 'c' }],
    ['both bindings', { scopes: ['reviewer'], carrierId: 'c', ownerId: 'o' }],
    ['an unbound webhooks key', { scopes: ['webhooks'] }],
    ['a bound admin', { scopes: ['admin'], ownerId: 'o' }],
    ['a malformed owner id', { scopes: ['customer'], ownerId: 'o w n e r' }],
  ];
  for (const [name, input] of bad) {
    it(`refuses ${name}`, () => {
      expect(() => parseGrant(input)).toThrow(GrantError);
    });
  }
});

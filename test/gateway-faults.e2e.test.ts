// The gateway under injected faults, over real mTLS MQTT on loopback: offline, asleep and partitioned cars, lost
// acks and commands, QoS duplicates, a low battery, and floods that must not reach the broker.
import { connect as netConnect } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../gateway/http/app.ts';
import { overdueRelocks } from '../gateway/store/deliveries.ts';
import { commandTopic, providerAdapter, readsAsProviderIndependent } from '../protocols/index.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import { type CarFaults, createFleetFaults, type FleetFaults } from '../simulator/index.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const COMMAND_TIMEOUT_MS = 1_200;
const QUERY_TIMEOUT_MS = 800;
// Long enough for an unlock, a lost ack, an unanswered query and a retry to happen before the car relocks.
const FAILSAFE_MS = 4_000;

let stack: Stack;
let faults: FleetFaults;
let cars: SeedVehicle[];

beforeAll(async () => {
  faults = createFleetFaults({ seed: 6 });
  stack = await startStack(
    {
      COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
      QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
      RECONCILE_INTERVAL_MS: '0',
      MAX_UNLOCKS: '1',
    },
    { fleet: { faults, failsafeRelockMs: FAILSAFE_MS, backoff: { initialMs: 100, maxMs: 400 } } },
  );
  cars = [...stack.fleet.cars.values()].map((c) => c.vehicle);
  for (const v of cars) {
    const r = await stack.request('POST', '/v1/vehicles', {
      vin: v.vin,
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      ownerId: v.ownerId,
      consent: ['unlock', 'lock'],
    });
    expect(r.status).toBe(201);
  }
});

afterAll(async () => {
  await stack?.close();
});

/**
 * A delivery to this car, with the driver standing next to it and the car's parking confirmed: one state query
 * on its command topic (publishedTo lists it first).
 */
async function deliveryFor(v: SeedVehicle): Promise<{ id: string; body: Record<string, unknown> }> {
  const loc = await stack.request('POST', '/v1/locations', {
    ownerId: v.ownerId,
    label: `at ${v.vin}`,
    lat: v.position.lat,
    lon: v.position.lon,
    radiusM: 200,
    access: 'public',
  });
  expect(loc.status).toBe(201);
  const now = Date.now();
  const d = await stack.request('POST', '/v1/deliveries', {
    vin: v.vin,
    locationId: loc.body.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  expect(d.status).toBe(201);
  const parked = await stack.request('POST', `/v1/deliveries/${d.body.id}/parking`);
  expect(parked.status).toBe(200);
  return { id: d.body.id, body: { driverId: 'driver-7', position: v.position, packageId: 'pkg-1' } };
}

const unlock = (d: { id: string; body: Record<string, unknown> }) =>
  stack.request('POST', `/v1/deliveries/${d.id}/unlock`, d.body);
const lock = (id: string) => stack.request('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' });
const view = async (id: string) => (await stack.request('GET', `/v1/deliveries/${id}`)).body;
const kinds = async (id: string): Promise<string[]> =>
  (await view(id)).timeline.map((e: { kind: string }) => e.kind);

/**
 * What the gateway published on this car's command topic, as the broker saw it: canonical message types in order,
 * read through the car's dialect (PROVIDERS.md).
 */
function publishedTo(vin: string): string[] {
  const dialect = providerAdapter((cars.find((c) => c.vin === vin) as SeedVehicle).provider);
  return stack.published
    .filter((p) => p.topic === commandTopic(vin))
    .map((p) => {
      const payload = Buffer.from(p.payload);
      return readsAsProviderIndependent(payload)
        ? (JSON.parse(payload.toString()) as { type: string }).type
        : dialect.decodeToCar(payload).type;
    });
}

const commandsOf = (deliveryId: string) =>
  stack.gateway.store.db
    .selectFrom('commands')
    .selectAll()
    .where('delivery_id', '=', deliveryId)
    .orderBy('issued_at')
    .execute();

function car(i: number): { v: SeedVehicle; f: CarFaults; sim: () => ReturnType<Stack['fleet']['car']> } {
  const v = cars[i] as SeedVehicle;
  return { v, f: faults.forCar(v.vin), sim: () => stack.fleet.car(v.vin) };
}

describe('an offline car', () => {
  it('answers VEHICLE_UNREACHABLE in bounded time; back after exp, the car refuses TOKEN_EXPIRED and stays locked', async () => {
    const { v, f, sim } = car(0);
    const d = await deliveryFor(v);
    f.setLink('offline');
    await expect.poll(() => sim().connection.connected).toBe(false);

    const started = Date.now();
    const r = await unlock(d);
    const took = Date.now() - started;
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ code: 'VEHICLE_UNREACHABLE', retryable: true, mayHaveSucceeded: true });
    expect(took).toBeLessThan(COMMAND_TIMEOUT_MS + QUERY_TIMEOUT_MS + 2_000);

    // The car was away long enough for the token to expire (its clock moved on while it was gone).
    f.jumpClock(10 * 60_000);
    f.setLink('online');
    await expect.poll(async () => (await commandsOf(d.id))[0]?.status, { timeout: 10_000 }).toBe('refused');
    const [command] = await commandsOf(d.id);
    expect(command?.reason).toBe('TOKEN_EXPIRED');
    expect(sim().car.snapshot().locked).toBe(true);
    expect(sim().executed).toEqual([]);
    const after = await view(d.id);
    expect(after).toMatchObject({ status: 'scheduled', unlocksUsed: 0 });
    expect(after.timeline.at(-1)).toMatchObject({
      kind: 'vehicle_refused',
      code: 'TOKEN_EXPIRED',
      detail: { settledBy: 'late_ack', previously: 'timeout' },
    });
    f.jumpClock(-10 * 60_000);
  });
});

describe('an asleep car', () => {
  it('wakes on the first command and executes it within the wait', async () => {
    const { v, f, sim } = car(1);
    const d = await deliveryFor(v);
    f.updatePlan({ wakeLatencyMs: 500 });
    f.setLink('asleep');
    const r = await unlock(d);
    expect(r.status).toBe(200);
    expect(sim().car.snapshot().locked).toBe(false);
    expect(f.counts()).toMatchObject({ wake_requested: 1, woken: 1 });
    expect((await lock(d.id)).status).toBe(200);
  });

  it('woken after the token expired, it refuses TOKEN_EXPIRED and stays locked', async () => {
    const { v, f, sim } = car(2);
    const d = await deliveryFor(v);
    f.updatePlan({ wakeLatencyMs: COMMAND_TIMEOUT_MS + QUERY_TIMEOUT_MS + 300 });
    f.setLink('asleep');
    // It sleeps through the request: no ack, no answer to the query.
    const pending = unlock(d);
    // Its clock says the wake-up came long after exp + skew.
    f.jumpClock(5 * 60_000);
    const r = await pending;
    expect(r.status).toBe(504);
    expect(r.body.mayHaveSucceeded).toBe(true);
    await expect
      .poll(async () => (await commandsOf(d.id))[0]?.reason, { timeout: 10_000 })
      .toBe('TOKEN_EXPIRED');
    expect(sim().car.snapshot().locked).toBe(true);
    expect(sim().executed).toEqual([]);
    f.jumpClock(-5 * 60_000);
  });
});

describe('a lost ack', () => {
  it('is settled by a state query: 200, timeline says how, and no second unlock is sent', async () => {
    const { v, f, sim } = car(3);
    f.updatePlan({ acks: { drop: 1 } });
    const d = await deliveryFor(v);
    const r = await unlock(d);
    expect(r.status).toBe(200);
    expect(sim().car.snapshot().locked).toBe(false);
    // The parking confirmation's query, the unlock, and the query naming it.
    expect(publishedTo(v.vin)).toEqual(['state_query', 'command', 'state_query']);
    const timeline = (await view(d.id)).timeline;
    expect(timeline.map((e: { kind: string }) => e.kind)).toEqual([
      'delivery_scheduled',
      'parking_confirmed',
      'unlock_granted',
      'command_sent',
      'command_timeout',
      'vehicle_unlocked',
    ]);
    expect(timeline.at(-1).detail).toMatchObject({ settledBy: 'state_query', locked: false });
    const [command] = await commandsOf(d.id);
    // The car named the outcome it had acked: no guessing from the lock state.
    expect(command).toMatchObject({ status: 'executed', reason: 'REPORTED_BY_CAR' });

    const locked = await lock(d.id);
    expect(locked.status).toBe(200);
    expect(sim().car.snapshot().locked).toBe(true);
    expect((await view(d.id)).status).toBe('completed');
    expect(f.counts().ack_lost).toBe(2);
    f.updatePlan({ acks: {} });
  });

  it('a retry after an unanswered query asks again first, and finds the car already open', async () => {
    const { v, f, sim } = car(5);
    const d = await deliveryFor(v);
    f.updatePlan({ acks: { drop: 1 }, state: { drop: 1 } });
    const first = await unlock(d);
    expect(first.status).toBe(504);
    expect(first.body.mayHaveSucceeded).toBe(true);
    expect(sim().car.snapshot().locked).toBe(false);

    f.updatePlan({ state: {} });
    const retry = await unlock(d);
    expect(retry.status).toBe(200);
    // Parking, one unlock, then two queries: the retry did not send a second unlock.
    expect(publishedTo(v.vin)).toEqual(['state_query', 'command', 'state_query', 'state_query']);
    expect(sim().executed).toHaveLength(1);
    const timeline = (await view(d.id)).timeline;
    expect(timeline.at(-1)).toMatchObject({ kind: 'unlock_requested', detail: { alreadyUnlocked: true } });
    f.updatePlan({ acks: {} });
    expect((await lock(d.id)).status).toBe(200);
  });

  it('a retry while the car still does not answer sends nothing and says so', async () => {
    const { v, f } = car(10);
    const d = await deliveryFor(v);
    f.updatePlan({ acks: { drop: 1 }, state: { drop: 1 } });
    expect((await unlock(d)).status).toBe(504);
    const retry = await unlock(d);
    expect(retry.status).toBe(504);
    expect(retry.body).toMatchObject({ code: 'VEHICLE_UNREACHABLE', mayHaveSucceeded: true });
    expect(publishedTo(v.vin).filter((t) => t === 'command')).toHaveLength(1);
    f.updatePlan({ acks: {}, state: {} });
    await stack.gateway.reconciler.sweep();
    expect((await lock(d.id)).status).toBe(200);
  });
});

describe('a dropped command', () => {
  it('is found not executed: 504 with mayHaveSucceeded false, the unlock is given back, a retry works', async () => {
    const { v, f, sim } = car(4);
    const d = await deliveryFor(v);
    f.updatePlan({ commands: { drop: 1 } });
    const pending = unlock(d);
    await expect.poll(() => f.counts().command_dropped ?? 0).toBe(1);
    f.updatePlan({ commands: {} }); // the query that follows gets through
    const r = await pending;
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ code: 'VEHICLE_UNREACHABLE', mayHaveSucceeded: false, retryable: true });
    expect(await view(d.id)).toMatchObject({ status: 'scheduled', unlocksUsed: 0 });
    expect((await commandsOf(d.id))[0]).toMatchObject({ status: 'not_executed', reason: 'NOT_RECEIVED' });

    const retry = await unlock(d);
    expect(retry.status).toBe(200);
    expect(publishedTo(v.vin)).toEqual(['state_query', 'command', 'state_query', 'command']);
    expect(sim().executed).toHaveLength(1);
    expect((await lock(d.id)).status).toBe(200);
  });
});

describe('QoS 1 duplicates', () => {
  it('the car executes once and sends the same ack twice; the gateway applies it once', async () => {
    const { v, f, sim } = car(6);
    const d = await deliveryFor(v);
    f.updatePlan({ commands: { duplicate: 1 } });
    expect((await unlock(d)).status).toBe(200);
    await expect
      .poll(() => stack.published.filter((p) => p.topic === `vehicles/${v.vin}/acks`).length)
      .toBe(2);
    const acks = stack.published
      .filter((p) => p.topic === `vehicles/${v.vin}/acks`)
      .map((p) => p.payload.toString());
    expect(acks[1]).toBe(acks[0]);
    expect(sim().executed).toHaveLength(1);
    expect((await kinds(d.id)).filter((k) => k === 'vehicle_unlocked')).toHaveLength(1);
    f.updatePlan({ commands: {} });
    expect((await lock(d.id)).status).toBe(200);
  });
});

describe('a low 12 V battery', () => {
  it('is refused by the car with LOW_BATTERY; the unlock is given back and the car stays locked', async () => {
    const { v, f, sim } = car(7);
    f.setBattery('low');
    const d = await deliveryFor(v);
    const r = await unlock(d);
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({
      code: 'VEHICLE_REFUSED',
      vehicleReason: 'LOW_BATTERY',
      mayHaveSucceeded: false,
    });
    expect(sim().car.snapshot().locked).toBe(true);
    expect(await view(d.id)).toMatchObject({ unlocksUsed: 0, status: 'scheduled' });
    f.setBattery('ok');
    expect((await unlock(d)).status).toBe(200);
    expect((await lock(d.id)).status).toBe(200);
  });
});

describe('a network partition that heals', () => {
  it('the car relocks by itself meanwhile, reconnects with backoff, and its report completes the delivery', async () => {
    const { v, f, sim } = car(8);
    const d = await deliveryFor(v);
    expect((await unlock(d)).status).toBe(200);
    f.setLink('no_signal');
    await expect.poll(() => sim().connection.connected).toBe(false);
    // The fail-safe needs no network.
    await expect.poll(() => sim().car.snapshot().locked, { timeout: FAILSAFE_MS + 2_000 }).toBe(true);
    expect((await view(d.id)).status).toBe('unlocked'); // the gateway cannot know yet
    expect(f.counts().connect_failed ?? 0).toBeGreaterThan(0);

    f.setLink('online');
    // The unlock's ack dated the opening, so the car's own later report is proof it locked (relocked_by_car).
    await expect.poll(async () => (await view(d.id)).status, { timeout: 10_000 }).toBe('completed');
    const timeline = (await view(d.id)).timeline;
    expect(timeline.slice(-2)).toMatchObject([
      { kind: 'relocked_by_car', detail: { carTime: expect.any(Number) } },
      { kind: 'delivery_completed', detail: { by: 'car' } },
    ]);
    const vehicle = await stack.request('GET', `/v1/vehicles/${v.vin}`);
    expect(vehicle.body).toMatchObject({ online: true, locked: true });
    expect((await lock(d.id)).body).toMatchObject({ code: 'DELIVERY_NOT_ACTIVE' });
  });

  it('an unlock learnt of only after the partition makes the relocked delivery one the driver can still lock', async () => {
    const { v, f, sim } = car(8);
    const d = await deliveryFor(v);
    // The car opens, but neither its ack nor an answer gets out before the partition.
    f.updatePlan({ acks: { drop: 1 }, state: { drop: 1 } });
    const r = await unlock(d);
    expect(r.body).toMatchObject({ code: 'VEHICLE_UNREACHABLE', mayHaveSucceeded: true });
    f.setLink('no_signal');
    await expect.poll(() => sim().connection.connected).toBe(false);
    await expect.poll(() => sim().car.snapshot().locked, { timeout: FAILSAFE_MS + 2_000 }).toBe(true);
    f.updatePlan({ acks: {}, state: {} });
    f.setLink('online');
    await expect.poll(() => sim().connection.connected, { timeout: 5_000 }).toBe(true);
    // The reconciler asks: the unlock executed, and the car is locked now.
    await stack.gateway.reconciler.sweep();
    await expect.poll(async () => (await view(d.id)).status, { timeout: 10_000 }).toBe('relocked');
    const timeline = (await view(d.id)).timeline;
    expect(timeline.at(-1)).toMatchObject({ kind: 'vehicle_relocked', detail: { by: 'car', locked: true } });
    // Confirmed locked: the watchdog leaves it alone, however long ago the car was opened.
    const overdue = await overdueRelocks(stack.gateway.store.db, Date.now() + 3_600_000, 1_000);
    expect(overdue.map((o) => o.id)).not.toContain(d.id);
    // The driver's lock still goes out and completes the delivery.
    expect((await lock(d.id)).status).toBe(200);
    expect((await view(d.id)).status).toBe('completed');
  });
});

describe('load hygiene', () => {
  it('200 concurrent unlocks for one VIN become at most a handful of PUBLISH on its command topic', async () => {
    const { v } = car(9);
    // One after another: each parking answer is a publish of the car's, which the broker rate-limits.
    const deliveries: Array<{ id: string; body: Record<string, unknown> }> = [];
    for (let i = 0; i < 10; i++) deliveries.push(await deliveryFor(v));
    const before = publishedTo(v.vin).length;
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        unlock(deliveries[i % deliveries.length] as { id: string; body: Record<string, unknown> }),
      ),
    );
    const published = publishedTo(v.vin).length - before;
    expect(published).toBeGreaterThanOrEqual(1);
    expect(published).toBeLessThanOrEqual(5);
    const codes = new Map<string, number>();
    for (const r of replies) {
      const key = r.status === 200 ? '200' : `${r.status} ${r.body.code}`;
      codes.set(key, (codes.get(key) ?? 0) + 1);
    }
    expect(codes.get('200')).toBe(published);
    for (const key of codes.keys()) {
      expect([
        '200',
        '429 VEHICLE_RATE_LIMITED',
        '409 DELIVERY_NOT_ACTIVE',
        '403 UNLOCK_LIMIT_REACHED',
      ]).toContain(key);
    }
    expect(codes.get('429 VEHICLE_RATE_LIMITED') ?? 0).toBeGreaterThan(0);
  });

  it('a limited request carries Retry-After', async () => {
    const { v } = car(9);
    // One unlock after another until the vehicle's burst is spent.
    let res: Awaited<ReturnType<Stack['gateway']['app']['inject']>> | undefined;
    for (let i = 0; i < 8; i++) {
      const d = await deliveryFor(v);
      res = await stack.gateway.app.inject({
        method: 'POST',
        url: `/v1/deliveries/${d.id}/unlock`,
        headers: { authorization: `Bearer ${stack.apiKey}` },
        payload: d.body,
      });
      if (res.statusCode !== 200) break;
    }
    if (!res) throw new Error('no request made');
    expect(res.statusCode).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(res.body)).toMatchObject({
      code: 'VEHICLE_RATE_LIMITED',
      retryable: true,
      mayHaveSucceeded: false,
    });
  });

  it('limits requests per API key with 429 RATE_LIMITED and Retry-After; other keys and /healthz are not affected', async () => {
    const g = stack.gateway;
    const app = await buildApp({
      db: g.store.db,
      vehicles: g.vehicles,
      deliveries: g.deliveries,
      control: g.control,
      logger: pino({ level: 'silent' }),
      perKeyPerMinute: 3,
    });
    try {
      const other = await g.createApiKey('second');
      const get = (key: string, url = '/v1/vehicles') =>
        app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });
      for (let i = 0; i < 3; i++) expect((await get(stack.apiKey)).statusCode).toBe(200);
      const limited = await get(stack.apiKey);
      expect(limited.statusCode).toBe(429);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(limited.body)).toMatchObject({ code: 'RATE_LIMITED', retryable: true });
      expect((await get(other)).statusCode).toBe(200);
      for (let i = 0; i < 5; i++) expect((await get(stack.apiKey, '/healthz')).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('drops an idle connection after the connection timeout and caps bodies at 64 KiB', async () => {
    const g = stack.gateway;
    const app = await buildApp({
      db: g.store.db,
      vehicles: g.vehicles,
      deliveries: g.deliveries,
      control: g.control,
      logger: pino({ level: 'silent' }),
      connectionTimeoutMs: 300,
      requestTimeoutMs: 2_000,
    });
    try {
      expect(app.initialConfig).toMatchObject({
        connectionTimeout: 300,
        requestTimeout: 2_000,
        bodyLimit: 65_536,
      });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const { port } = app.server.address() as { port: number };
      const closed = await new Promise<boolean>((resolve) => {
        const socket = netConnect(port, '127.0.0.1', () =>
          socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'),
        );
        socket.on('close', () => resolve(true));
        socket.on('error', () => resolve(true));
        setTimeout(() => {
          socket.destroy();
          resolve(false);
        }, 5_000);
      });
      expect(closed).toBe(true);
      const big = await app.inject({
        method: 'POST',
        url: '/v1/vehicles',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ pad: 'x'.repeat(70_000) }),
      });
      expect(big.statusCode).toBe(413);
      expect(JSON.parse(big.body).code).toBe('BODY_TOO_LARGE');
    } finally {
      await app.close();
    }
  });
});

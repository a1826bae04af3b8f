// Metrics: /metrics parses as Prometheus text, needs no API key, and its counters move with deliveries.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootGateway } from '../gateway/platform/bootstrap.ts';
import { parseConfig } from '../gateway/platform/config.ts';
import { METRIC_NAMES } from '../gateway/platform/metrics.ts';
import { loadSeeds, type SeedLocation, type SeedVehicle } from '../seeds/index.ts';
import { type CarControl, carControl } from './helpers/cars.ts';
import { type Exposition, parsePrometheus } from './helpers/prometheus.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const N = METRIC_NAMES;
let cars: CarControl;
let stack: Stack;
let location: SeedLocation;
const vehicles: SeedVehicle[] = [];

beforeAll(async () => {
  cars = carControl();
  stack = await startStack({ COMMAND_TIMEOUT_MS: '1000' }, { createClient: cars.createClient });
  for (const make of ['Chevrolet', 'Volvo', 'GMC']) {
    const v = stack.seeds.vehicles.find((s) => s.make === make && s.year >= 2015) as SeedVehicle;
    const r = await stack.request('POST', '/v1/vehicles', {
      vin: v.vin,
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      ownerId: 'owner-metrics',
      consent: ['unlock', 'lock'],
    });
    expect(r.status).toBe(201);
    vehicles.push(v);
  }
  const seed = stack.seeds.locations[0] as SeedLocation;
  const loc = await stack.request('POST', '/v1/locations', {
    ownerId: 'owner-metrics',
    label: 'lot',
    kind: seed.kind,
    lat: seed.lat,
    lon: seed.lon,
    radiusM: 200,
    access: 'public',
  });
  location = { ...seed, id: loc.body.id };
  // The three cars (different owners in the seeds) are parked at this one lot for the test.
  for (const v of vehicles) stack.fleet.car(v.vin).car.moveTo({ lat: seed.lat, lon: seed.lon });
});

afterAll(async () => {
  await stack?.close();
});

async function scrape(): Promise<Exposition> {
  // No API key: Prometheus scrapes without one.
  const r = await stack.gateway.app.inject({ method: 'GET', url: '/metrics' });
  expect(r.statusCode).toBe(200);
  expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheus(r.body);
}

async function delivery(vin: string): Promise<string> {
  const now = Date.now();
  const d = await stack.request('POST', '/v1/deliveries', {
    vin,
    locationId: location.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  expect(d.status).toBe(201);
  // The car confirms it is parked at the location before anything opens (PROTOCOL.md §3.5).
  expect((await stack.request('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
  return d.body.id;
}

const unlockBody = () => ({
  driverId: 'driver-7',
  position: { lat: location.lat, lon: location.lon },
  packageId: 'pkg-1',
});

describe('/metrics', () => {
  it('is Prometheus text with every gateway metric declared, and process metrics', async () => {
    const m = await scrape();
    expect(m.types.get(N.carsConnected)).toBe('gauge');
    expect(m.types.get(N.commands)).toBe('counter');
    expect(m.types.get(N.refusals)).toBe('counter');
    expect(m.types.get(N.unlockRoundTrip)).toBe('histogram');
    expect(m.types.get(N.ackTimeouts)).toBe('counter');
    expect(m.types.get(N.watchdogRelocks)).toBe('counter');
    expect(m.types.get(N.webhookOutboxDepth)).toBe('gauge');
    expect(m.types.get(N.webhookFailures)).toBe('counter');
    expect(m.types.get(N.httpRequests)).toBe('counter');
    expect(m.types.get(N.httpDuration)).toBe('histogram');
    expect(m.types.get(N.storeDuration)).toBe('histogram');
    expect(m.types.get('process_cpu_user_seconds_total')).toBe('counter');
  });

  it('counts the cars connected to the embedded broker', async () => {
    expect((await scrape()).value(N.carsConnected)).toBe(stack.fleet.cars.size);
  });

  it('moves with a whole delivery: commands, round trip, HTTP routes and store', async () => {
    const before = await scrape();
    const id = await delivery(vehicles[0]!.vin);
    const wrongDriver = await stack.request('POST', `/v1/deliveries/${id}/unlock`, {
      ...unlockBody(),
      driverId: 'driver-9',
    });
    expect(wrongDriver.body.code).toBe('DRIVER_NOT_ASSIGNED');
    expect((await stack.request('POST', `/v1/deliveries/${id}/unlock`, unlockBody())).status).toBe(200);
    expect((await stack.request('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' })).status).toBe(
      200,
    );
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) =>
      after.value(name, labels) - before.value(name, labels);

    expect(delta(N.commands, { action: 'unlock', outcome: 'executed' })).toBe(1);
    expect(delta(N.commands, { action: 'lock', outcome: 'executed' })).toBe(1);
    expect(delta(N.refusals, { source: 'gateway', code: 'DRIVER_NOT_ASSIGNED' })).toBe(1);
    expect(delta(`${N.unlockRoundTrip}_count`)).toBe(1);
    expect(delta(`${N.unlockRoundTrip}_bucket`, { le: '+Inf' })).toBe(1);
    const route = '/v1/deliveries/:id/unlock';
    expect(delta(N.httpRequests, { method: 'POST', route, status: '200' })).toBe(1);
    expect(delta(N.httpRequests, { method: 'POST', route, status: '403' })).toBe(1);
    expect(delta(`${N.httpDuration}_count`, { method: 'POST', route })).toBe(2);
    expect(delta(`${N.storeDuration}_count`, { operation: 'insert' })).toBeGreaterThan(0);
    expect(delta(`${N.storeDuration}_count`, { operation: 'select' })).toBeGreaterThan(0);
  });

  it('labels unknown paths as unmatched, not by their path', async () => {
    expect((await stack.request('GET', '/no/such/place-12345')).status).toBe(404);
    await stack.gateway.app.inject({ method: 'GET', url: '/no/such/place-67890' });
    const m = await scrape();
    expect(m.value(N.httpRequests, { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(m.value(N.httpRequests, { method: 'GET', route: 'unmatched', status: '401' })).toBe(1);
    expect(m.samples.some((s) => s.labels.route?.includes('place-'))).toBe(false);
  });

  it('counts the reason a car refused with', async () => {
    const vin = vehicles[1]!.vin;
    const before = await scrape();
    cars.tamper(vin, true);
    const r = await stack.request('POST', `/v1/deliveries/${await delivery(vin)}/unlock`, unlockBody());
    cars.tamper(vin, false);
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('VEHICLE_REFUSED');
    const reason = r.body.vehicleReason as string;
    expect(reason).toMatch(/^[A-Z_]+$/);
    const after = await scrape();
    expect(
      after.value(N.refusals, { source: 'vehicle', code: reason }) -
        before.value(N.refusals, { source: 'vehicle', code: reason }),
    ).toBe(1);
    expect(
      after.value(N.commands, { action: 'unlock', outcome: 'refused' }) -
        before.value(N.commands, { action: 'unlock', outcome: 'refused' }),
    ).toBe(1);
  });

  it('counts an ack timeout', async () => {
    const vin = vehicles[2]!.vin;
    const before = await scrape();
    cars.acks(vin, 'drop');
    const r = await stack.request('POST', `/v1/deliveries/${await delivery(vin)}/unlock`, unlockBody());
    cars.acks(vin, 'pass');
    // The ack wait timed out; the car's answer to the state query that followed settled the unlock as executed
    // (PROTOCOL.md §6.3). The timeout is what is counted.
    expect(r.status).toBe(200);
    const after = await scrape();
    expect(
      after.value(N.ackTimeouts, { action: 'unlock' }) - before.value(N.ackTimeouts, { action: 'unlock' }),
    ).toBe(1);
    expect(
      after.value(N.commands, { action: 'unlock', outcome: 'timeout' }) -
        before.value(N.commands, { action: 'unlock', outcome: 'timeout' }),
    ).toBe(1);
  });

  it("counts the watchdog's relocks of cars left open, through the running service", async () => {
    const before = await scrape();
    expect(before.value(N.watchdogRelocks)).toBe(0);
    const id = await delivery(vehicles[0]!.vin);
    expect((await stack.request('POST', `/v1/deliveries/${id}/unlock`, unlockBody())).status).toBe(200);
    // Nobody locks: RELOCK_AFTER_S later, on the watchdog's clock, its sweep locks the car.
    stack.advanceWatchdog(90_000 + 1_000);
    const swept = await stack.gateway.watchdog.sweep();
    expect(swept).toContainEqual({ deliveryId: id, outcome: 'locked' });
    expect(stack.fleet.car(vehicles[0]!.vin).car.snapshot().locked).toBe(true);
    const view = await stack.request('GET', `/v1/deliveries/${id}`);
    expect(view.body.timeline.map((e: { kind: string }) => e.kind)).toContain('relocked_by_watchdog');
    // Every car the sweep locked is counted once (an earlier test left another car open, which it locks too).
    const locked = swept.filter((r) => r.outcome === 'locked').length;
    expect((await scrape()).value(N.watchdogRelocks) - before.value(N.watchdogRelocks)).toBe(locked);
    // A sweep with nothing overdue counts nothing.
    expect(await stack.gateway.watchdog.sweep()).toEqual([]);
    expect((await scrape()).value(N.watchdogRelocks) - before.value(N.watchdogRelocks)).toBe(locked);
  });

  it('exposes the increment point the webhook dispatcher feeds', async () => {
    stack.gateway.metrics.webhookFailed();
    const m = await scrape();
    expect(m.value(N.webhookFailures)).toBe(1);
  });

  it('keeps one registry per gateway', async () => {
    const other = await startStack();
    try {
      const r = await other.gateway.app.inject({ method: 'GET', url: '/metrics' });
      expect(parsePrometheus(r.body).value(N.watchdogRelocks)).toBe(0);
    } finally {
      await other.close();
    }
  });
});

describe('README', () => {
  it('names every metric', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const name of Object.values(METRIC_NAMES)) expect(readme).toContain(`\`${name}\``);
  });
});

describe('METRICS_PORT', () => {
  it('serves /metrics on its own listener, and then not on the HTTP port', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'curbside-metrics-'));
    const seeds = loadSeeds();
    try {
      const booted = await bootGateway({
        config: parseConfig({
          NODE_ENV: 'test',
          HTTP_PORT: '0',
          MQTT_PORT: '0',
          METRICS_PORT: '0',
          DATA_DIR: join(dir, 'data'),
          CERTS_DIR: join(dir, 'pki'),
        }),
        catalog: seeds.catalog,
        seededVins: [],
        logger: pino({ level: 'silent' }),
        print: () => undefined,
      });
      try {
        expect(booted.metricsUrl).not.toContain(booted.baseUrl);
        const scraped = await fetch(booted.metricsUrl);
        expect(scraped.status).toBe(200);
        expect(parsePrometheus(await scraped.text()).types.get(N.commands)).toBe('counter');
        const onMain = await fetch(`${booted.baseUrl}/metrics`, {
          headers: { authorization: `Bearer ${booted.apiKey}` },
        });
        expect(onMain.status).toBe(404);
        await onMain.body?.cancel();
        expect((await fetch(`${booted.baseUrl}/readyz`)).status).toBe(200);
      } finally {
        await booted.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('asked on the HTTP port, /metrics answers 404 with a hint naming the metrics port, key or no key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'curbside-metrics-'));
    try {
      const booted = await bootGateway({
        config: parseConfig({
          NODE_ENV: 'test',
          HTTP_PORT: '0',
          MQTT_PORT: '0',
          METRICS_PORT: '0',
          DATA_DIR: join(dir, 'data'),
          CERTS_DIR: join(dir, 'pki'),
        }),
        catalog: loadSeeds().catalog,
        seededVins: [],
        logger: pino({ level: 'silent' }),
        print: () => undefined,
      });
      try {
        const headerSets: Array<Record<string, string>> = [{}, { authorization: `Bearer ${booted.apiKey}` }];
        for (const headers of headerSets) {
          const r = await fetch(`${booted.baseUrl}/metrics`, { headers });
          expect(r.status).toBe(404);
          expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
          const body = (await r.json()) as { code: string; detail: string };
          expect(body.code).toBe('ROUTE_NOT_FOUND');
          expect(body.detail).toContain('METRICS_PORT');
          expect(body.detail).toContain(booted.metricsUrl);
        }
      } finally {
        await booted.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

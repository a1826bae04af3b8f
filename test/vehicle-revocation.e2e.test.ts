// A car whose certificate is revoked (`npm run certs -- revoke <VIN>`), as the gateway sees it on the real test stack:
// offline and revoked in the vehicle view at once, and no command is sent to it, each refusal on the timeline.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reissueVehicle, revokeVehicle } from '../certs/index.ts';
import { commandTopic } from '../protocols/index.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import { type Call, callWithKey, deliveryBody, link, locationAt, unlockBody } from './helpers/platform.ts';
import { read, type Stack, startStack } from './helpers/stack.ts';

const SIERRA = '1GTU9DED2LZ500431';
const ACADIA = '1GKKNRLS3GZ600212';
const MALIBU = '1G1ZE5ST5KF100231';
const RELOCK_AFTER_MS = 90_000;

let stack: Stack;
let admin: Call;
const cars = new Map<string, { vehicle: SeedVehicle; locationId: string }>();

beforeAll(async () => {
  stack = await startStack();
  admin = callWithKey(stack, stack.apiKey);
  for (const vin of [SIERRA, ACADIA, MALIBU]) {
    const vehicle = stack.seeds.vehicles.find((v) => v.vin === vin) as SeedVehicle;
    await link(admin, vehicle);
    cars.set(vin, { vehicle, locationId: await locationAt(admin, vehicle) });
  }
});
afterAll(async () => {
  await stack?.close();
});

/** A delivery to the car with its parking confirmed by the car itself. */
async function parked(vin: string): Promise<string> {
  const { vehicle, locationId } = cars.get(vin) as { vehicle: SeedVehicle; locationId: string };
  const d = await admin('POST', '/v1/deliveries', deliveryBody(vehicle, locationId));
  expect(d.status, JSON.stringify(d.body)).toBe(201);
  expect((await admin('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
  return d.body.id;
}

const vehicleView = async (vin: string) => (await admin('GET', `/v1/vehicles/${vin}`)).body;
const commandsTo = (vin: string) => stack.published.filter((p) => p.topic === commandTopic(vin)).length;
const timeline = async (id: string): Promise<Array<{ kind: string; outcome: string; code: string | null }>> =>
  (await admin('GET', `/v1/deliveries/${id}`)).body.timeline;

/** Revokes the car's certificate the way an operator does, and waits (briefly) until the gateway shows it. */
async function revoke(vin: string): Promise<void> {
  await revokeVehicle({ dir: stack.pki.dir, vin });
  await expect
    .poll(() => vehicleView(vin), { timeout: 5_000, interval: 20 })
    .toMatchObject({ online: false, revoked: true });
}

describe('a revoked car', () => {
  it('shows offline and revoked at once, and an unlock is refused with nothing sent', async () => {
    const id = await parked(SIERRA);
    expect(await vehicleView(SIERRA)).toMatchObject({ online: true, revoked: false });

    await revoke(SIERRA);
    // The broker closed its live session; the gateway heard it from the broker, not from a will or a timeout.
    expect(stack.logs).toContainEqual(
      expect.objectContaining({ event: 'broker.session_revoked', identity: SIERRA, code: 'CERT_REVOKED' }),
    );
    const stored = async () =>
      (
        await stack.gateway.store.db
          .selectFrom('vehicles')
          .select('online')
          .where('vin', '=', SIERRA)
          .executeTakeFirstOrThrow()
      ).online;
    await expect.poll(stored, { timeout: 2_000, interval: 10 }).toBe(0);
    const listed = (await admin('GET', '/v1/vehicles')).body.vehicles;
    expect(listed.find((v: { vin: string }) => v.vin === SIERRA)).toMatchObject({
      online: false,
      revoked: true,
    });
    // Others are untouched.
    expect(await vehicleView(ACADIA)).toMatchObject({ revoked: false });

    const before = commandsTo(SIERRA);
    const { vehicle } = cars.get(SIERRA) as { vehicle: SeedVehicle };
    const unlock = await admin('POST', `/v1/deliveries/${id}/unlock`, unlockBody(vehicle));
    expect(unlock.status).toBe(409);
    expect(unlock.body).toMatchObject({
      code: 'VEHICLE_CERTIFICATE_REVOKED',
      retryable: false,
      resolution: 'CONTACT_SUPPORT',
      mayHaveSucceeded: false,
    });
    expect(commandsTo(SIERRA)).toBe(before);
    expect((await timeline(id)).at(-1)).toMatchObject({
      kind: 'unlock_requested',
      outcome: 'denied',
      code: 'VEHICLE_CERTIFICATE_REVOKED',
    });
    expect(stack.events.filter((e) => e.deliveryId === id).at(-1)).toMatchObject({
      type: 'access.denied',
      data: expect.objectContaining({ code: 'VEHICLE_CERTIFICATE_REVOKED' }),
    });
    // Nor is the car asked to confirm its parking: its answer could not be trusted.
    const parking = await admin('POST', `/v1/deliveries/${id}/parking`, {});
    expect(parking.status).toBe(409);
    expect(parking.body.code).toBe('VEHICLE_CERTIFICATE_REVOKED');
    expect(commandsTo(SIERRA)).toBe(before);
  });

  it('left open: neither the driver lock nor the watchdog sends it anything; the owner hears lock_unconfirmed', async () => {
    const id = await parked(ACADIA);
    const { vehicle } = cars.get(ACADIA) as { vehicle: SeedVehicle };
    expect((await admin('POST', `/v1/deliveries/${id}/unlock`, unlockBody(vehicle))).status).toBe(200);
    await revoke(ACADIA);
    const before = commandsTo(ACADIA);

    const lock = await admin('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' });
    expect(lock.status).toBe(409);
    expect(lock.body).toMatchObject({ code: 'VEHICLE_CERTIFICATE_REVOKED', mayHaveSucceeded: false });
    expect((await timeline(id)).at(-1)).toMatchObject({
      kind: 'lock_requested',
      outcome: 'denied',
      code: 'VEHICLE_CERTIFICATE_REVOKED',
    });

    stack.advanceWatchdog(RELOCK_AFTER_MS + 1_000);
    try {
      expect(await stack.gateway.watchdog.sweep()).toEqual([{ deliveryId: id, outcome: 'unconfirmed' }]);
    } finally {
      stack.advanceWatchdog(-(RELOCK_AFTER_MS + 1_000));
    }
    expect(commandsTo(ACADIA)).toBe(before);
    expect((await timeline(id)).at(-1)).toMatchObject({
      kind: 'lock_unconfirmed',
      outcome: 'denied',
      code: 'VEHICLE_CERTIFICATE_REVOKED',
    });
    expect(stack.events.filter((e) => e.deliveryId === id).map((e) => e.type)).toContain(
      'vehicle.lock_unconfirmed',
    );
  });

  it('a new certificate for it (no CRL change) serves it again: the revoked serial is never cached as good', async () => {
    await reissueVehicle({ dir: stack.pki.dir, vin: SIERRA });
    const connection = stack.fleet.car(SIERRA).connection;
    await connection.replaceCredentials({
      cert: read(stack.pki.vehicleCert(SIERRA)),
      key: read(stack.pki.vehicleKey(SIERRA)),
    });
    expect(connection.status).toBe('connected');
    expect(await vehicleView(SIERRA)).toMatchObject({ revoked: false });
    const id = await parked(SIERRA);
    const { vehicle } = cars.get(SIERRA) as { vehicle: SeedVehicle };
    expect((await admin('POST', `/v1/deliveries/${id}/unlock`, unlockBody(vehicle))).status).toBe(200);
    expect((await admin('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' })).status).toBe(200);
    await expect
      .poll(() => vehicleView(SIERRA), { timeout: 5_000, interval: 20 })
      .toMatchObject({ online: true, revoked: false, locked: true });
  });

  it('another car keeps being served', async () => {
    const id = await parked(MALIBU);
    const { vehicle } = cars.get(MALIBU) as { vehicle: SeedVehicle };
    expect((await admin('POST', `/v1/deliveries/${id}/unlock`, unlockBody(vehicle))).status).toBe(200);
    expect((await admin('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' })).status).toBe(200);
  });
});

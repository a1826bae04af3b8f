// The gateway and the simulated fleet, unchanged, against a real Mosquitto configured by `certs mosquitto` (MQTT_URL).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeVehicle } from '../certs/index.ts';
import {
  COMPLETED,
  linkSeeded,
  registerSeededLocation,
  runDelivery,
  scheduleParked,
  unlockAt,
} from './helpers/delivery.ts';
import { type Mosquitto, startMosquitto } from './helpers/mosquitto.ts';
import { CONNACK_ACCEPTED, connectClient, connectPacket, rawSession } from './helpers/mqtt.ts';
import { read, type Stack, startStack } from './helpers/stack.ts';

const DELIVERED = '1G1ZE5ST5KF100231';
const REVOKED = 'YV4A22PKXN1010762';
const SENDER = '1FA6P8TH6J5130557'; // has a certificate, not in the fleet

let stack: Stack;
let mosquitto: Mosquitto;

beforeAll(async () => {
  stack = await startStack(
    {},
    {
      externalBroker: async (pki, dir) => {
        mosquitto = await startMosquitto(pki, dir);
        return mosquitto;
      },
    },
  );
});

afterAll(async () => {
  await stack?.close(); // stops Mosquitto too
});

const identity = (vin: string) => ({
  cert: read(stack.pki.vehicleCert(vin)),
  key: read(stack.pki.vehicleKey(vin)),
});

describe('running with an external Mosquitto', () => {
  it('turns the embedded broker off and completes a whole delivery through Mosquitto', async () => {
    expect(stack.gateway.broker).toBeNull();
    expect(stack.gateway.brokerUrl).toBe(mosquitto.url);
    expect(stack.fleet.cars.size).toBe(11);
    expect(await runDelivery(stack, DELIVERED)).toEqual(COMPLETED);
    // The car's state report went through Mosquitto to the gateway too.
    await expect
      .poll(async () => (await stack.request('GET', `/v1/vehicles/${DELIVERED}`)).body, { timeout: 5_000 })
      .toMatchObject({ online: true, locked: true });
  });

  it('drops malformed packets and keeps serving', async () => {
    const afterConnect = (bytes: number[]) => [...connectPacket(SENDER), ...bytes];
    for (const bytes of [
      [0x10, 0x04, 0x00, 0x04, 0x4d, 0x51],
      afterConnect([0x30, 0x05, 0x00, 0x00, 0x61, 0x62, 0x63]),
      afterConnect([0x30, 0xff, 0xff, 0xff, 0x7f]),
      afterConnect([0x82, 0x02, 0x00, 0x01]),
    ]) {
      const session = await rawSession(mosquitto.url, { ca: read(stack.pki.caCert), ...identity(SENDER) });
      session.write(bytes);
      await session.closed;
      expect(session.received().length === 0 || session.received().equals(CONNACK_ACCEPTED)).toBe(true);
    }
    expect(await runDelivery(stack, DELIVERED)).toEqual(COMPLETED);
  });

  it('refuses a revoked car once Mosquitto re-reads the CRL on SIGHUP; the gateway, reading the CRL itself, sends it nothing', async () => {
    const vehicle = await linkSeeded(stack, REVOKED);
    const { id: locationId, location } = await registerSeededLocation(stack, vehicle.ownerId);
    const id = await scheduleParked(stack, REVOKED, locationId);
    await revokeVehicle({ dir: stack.pki.dir, vin: REVOKED });
    // No broker in the gateway's process to tell it: it reads the same crl.pem Mosquitto is given.
    await expect
      .poll(async () => (await stack.request('GET', `/v1/vehicles/${REVOKED}`)).body, { timeout: 5_000 })
      .toMatchObject({ online: false, revoked: true });
    await mosquitto.reload();
    const again = await connectClient(
      mosquitto.url,
      { ca: read(stack.pki.caCert), ...identity(REVOKED) },
      { clientId: REVOKED },
    );
    expect(again.outcome).toEqual({ kind: 'closed' });
    // Documented difference: Mosquitto checks the CRL at the handshake only, so the session that was
    // already up would still carry commands (the embedded broker closes it, broker-revocation.test.ts);
    // the gateway refuses to send any.
    const unlock = await unlockAt(stack, id, location);
    expect(unlock.status).toBe(409);
    expect(unlock.body).toMatchObject({ code: 'VEHICLE_CERTIFICATE_REVOKED', mayHaveSucceeded: false });
    const timeline = (await stack.request('GET', `/v1/deliveries/${id}`)).body.timeline;
    expect(timeline.map((e: { kind: string }) => e.kind)).not.toContain('command_sent');
    expect(stack.fleet.car(REVOKED).car.snapshot().locked).toBe(true);
  });
});

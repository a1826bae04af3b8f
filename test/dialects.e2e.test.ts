// End to end over the real broker: a message in the wrong provider dialect is refused with a stable code, at
// the car and at the gateway, and a state query is answered only by the report that echoes its nonce.
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ackTopic,
  commandTopic,
  onstar,
  type StateReport,
  stateTopic,
  volvoOnCall,
} from '../protocols/index.ts';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { read, type Stack, startStack } from './helpers/stack.ts';

const MALIBU = '1G1ZE5ST5KF100231';
const ACADIA = '1GKKNRLS3GZ600212';
const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ COMMAND_TIMEOUT_MS: '1000', QUERY_TIMEOUT_MS: '500' });
  for (const vin of [MALIBU, ACADIA]) {
    const v = stack.seeds.vehicles.find((x) => x.vin === vin) as SeedVehicle;
    const { position: _, ...body } = v;
    expect(
      (await stack.request('POST', '/v1/vehicles', { ...body, consent: ['unlock', 'lock'] })).status,
    ).toBe(201);
  }
});
afterAll(async () => {
  await stack?.close();
});

/** Waits for the next message on a topic the client is subscribed to. */
function next(client: MqttClient, topic: string): Promise<Buffer> {
  return new Promise((resolve) => {
    const on = (t: string, payload: Buffer) => {
      if (t !== topic) return;
      client.off('message', on);
      resolve(payload);
    };
    client.on('message', on);
  });
}

describe('at the car', () => {
  let gateway2: MqttClient;
  beforeAll(async () => {
    // A second gateway replica's identity: allowed to publish commands and read acks, like the gateway.
    gateway2 = await stack.connectAs('gateway-t2', {
      cert: read(stack.pki.gatewayCert),
      key: read(stack.pki.gatewayKey),
    });
    await gateway2.subscribeAsync(ackTopic(MALIBU), { qos: 1 });
  });

  it('an OnStar car refuses a Volvo On Call command with DIALECT_MISMATCH, acked in OnStar', async () => {
    const answer = next(gateway2, ackTopic(MALIBU));
    const command = volvoOnCall.encodeToCar({
      v: 1,
      type: 'command',
      commandId: 'cmd_foreign',
      deliveryId: 'dlv_foreign',
      action: 'unlock',
      token: TOKEN,
    });
    await gateway2.publishAsync(commandTopic(MALIBU), command, { qos: 1 });
    const ack = onstar.decodeAck(await answer);
    expect(ack).toMatchObject({
      commandId: 'cmd_foreign',
      outcome: 'refused',
      reason: 'DIALECT_MISMATCH',
      locked: true,
    });
    expect(stack.fleet.car(MALIBU).car.snapshot().locked).toBe(true);
  });

  it('refuses a request for another action in its own dialect with ACTION_NOT_ALLOWED', async () => {
    const answer = next(gateway2, ackTopic(MALIBU));
    const remoteStart = JSON.stringify({
      onstar: '1.0',
      commandRequest: { requestId: 'cmd_start', type: 'start', orderId: 'dlv_x', authorization: TOKEN },
    });
    await gateway2.publishAsync(commandTopic(MALIBU), remoteStart, { qos: 1 });
    expect(onstar.decodeAck(await answer)).toMatchObject({
      commandId: 'cmd_start',
      action: 'start',
      outcome: 'refused',
      reason: 'ACTION_NOT_ALLOWED',
    });
    expect(stack.fleet.car(MALIBU).car.snapshot().locked).toBe(true);
  });
});

describe('at the gateway', () => {
  let car: MqttClient;
  let location: SeedLocation;
  /** How the stand-in car answers: in its own dialect, or with what each test wants. */
  let answerQuery: (nonce: string) => string;
  let answerCommand: (commandId: string, deliveryId: string) => string;
  let seq = 0;

  const report = (over: Partial<StateReport> = {}): StateReport => ({
    v: 1,
    type: 'state',
    vin: ACADIA,
    seq: ++seq,
    online: true,
    locked: true,
    doors: { driver: 'closed', passenger: 'closed', rearLeft: 'closed', rearRight: 'closed' },
    trunk: 'closed',
    ignition: 'off',
    position: { lat: location.lat, lon: location.lon },
    at: Date.now(),
    ...over,
  });

  beforeAll(async () => {
    const v = stack.seeds.vehicles.find((x) => x.vin === ACADIA) as SeedVehicle;
    location = stack.seeds.locations.find((l) => l.ownerId === v.ownerId) as SeedLocation;
    // The simulated Acadia steps aside; a stand-in with its certificate answers as the test says.
    await stack.fleet.car(ACADIA).connection.close();
    car = await stack.connectAs(ACADIA, {
      cert: read(stack.pki.vehicleCert(ACADIA)),
      key: read(stack.pki.vehicleKey(ACADIA)),
    });
    await car.subscribeAsync(commandTopic(ACADIA), { qos: 1 });
    car.on('message', (_topic, payload) => {
      const m = onstar.decodeToCar(payload);
      if (m.type === 'state_query') car.publish(stateTopic(ACADIA), answerQuery(m.nonce), { qos: 1 });
      else car.publish(ackTopic(ACADIA), answerCommand(m.commandId, m.deliveryId), { qos: 1 });
    });
  });

  async function scheduled(): Promise<string> {
    const loc = await stack.request('POST', '/v1/locations', { ...location, id: undefined });
    const d = await stack.request('POST', '/v1/deliveries', {
      vin: ACADIA,
      locationId: loc.body.id,
      driverId: 'driver-7',
      packageIds: ['pkg-1'],
      window: { start: new Date(Date.now() - 60_000).toISOString() },
    });
    expect(d.status).toBe(201);
    return d.body.id;
  }

  it('a state report without the query nonce does not answer the query: 504, nothing confirmed', async () => {
    const id = await scheduled();
    answerQuery = () => onstar.encodeState(report());
    const r = await stack.request('POST', `/v1/deliveries/${id}/parking`);
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ code: 'VEHICLE_UNREACHABLE', retryable: true, mayHaveSucceeded: false });
    answerQuery = () => onstar.encodeState(report({ nonce: 'not-the-nonce-we-asked-for' }));
    expect((await stack.request('POST', `/v1/deliveries/${id}/parking`)).status).toBe(504);
    expect((await stack.request('GET', `/v1/deliveries/${id}`)).body.parking).toBeNull();
  });

  it('a state report in the wrong dialect is refused as DIALECT_MISMATCH and answers nothing', async () => {
    const id = await scheduled();
    answerQuery = (nonce) => volvoOnCall.encodeState(report({ nonce }));
    expect((await stack.request('POST', `/v1/deliveries/${id}/parking`)).status).toBe(504);
    expect(stack.logs).toContainEqual(
      expect.objectContaining({
        event: 'mqtt.message_refused',
        vin: ACADIA,
        kind: 'state',
        code: 'DIALECT_MISMATCH',
      }),
    );
  });

  it('an ack in the wrong dialect is refused as DIALECT_MISMATCH: the unlock is never taken as done', async () => {
    const id = await scheduled();
    answerQuery = (nonce) => onstar.encodeState(report({ nonce }));
    expect((await stack.request('POST', `/v1/deliveries/${id}/parking`)).status).toBe(200);
    answerCommand = (commandId, deliveryId) =>
      volvoOnCall.encodeAck({
        v: 1,
        type: 'ack',
        vin: ACADIA,
        commandId,
        deliveryId,
        action: 'unlock',
        outcome: 'executed',
        locked: false,
        at: Date.now(),
        sig: 'eyJhbGciOiJFUzI1NiJ9..bm90LXZlcmlmaWVk',
      });
    // Nor does it answer the state query that follows the missing ack (PROTOCOL.md §6.3): its reports carry no nonce.
    answerQuery = () => onstar.encodeState(report());
    const r = await stack.request('POST', `/v1/deliveries/${id}/unlock`, {
      driverId: 'driver-7',
      packageId: 'pkg-1',
      position: { lat: location.lat, lon: location.lon },
    });
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ code: 'VEHICLE_UNREACHABLE', mayHaveSucceeded: true });
    expect(stack.logs).toContainEqual(
      expect.objectContaining({
        event: 'mqtt.message_refused',
        vin: ACADIA,
        kind: 'acks',
        code: 'DIALECT_MISMATCH',
      }),
    );
    const view = await stack.request('GET', `/v1/deliveries/${id}`);
    expect(view.body.status).toBe('scheduled');
    // Unanswered, the car may be open: the watchdog locks it after the relock time. This car answers in
    // the wrong dialect again, so the lock cannot be confirmed either, and the owner hears of it.
    expect(view.body.unlockedAt).not.toBeNull();
    stack.advanceWatchdog(100_000);
    try {
      expect(await stack.gateway.watchdog.sweep()).toEqual([{ deliveryId: id, outcome: 'unconfirmed' }]);
    } finally {
      stack.advanceWatchdog(-100_000);
    }
    expect(stack.events.filter((e) => e.deliveryId === id).map((e) => e.type)).toContain(
      'vehicle.lock_unconfirmed',
    );
  });
});

// Over real mTLS MQTT: a stolen gateway credential ("gateway-evil") publishing hand-made commands, and key rotation.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Ack,
  ackTopic,
  commandTopic,
  kidFor,
  TOKEN_ISSUER,
  TOKEN_TYP,
  verifyAckSignature,
} from '../protocols/index.ts';
import { providerAdapter } from '../protocols/providers/index.ts';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { jws, OTHER_VIN } from './helpers/forge.ts';
import { read, type Stack, startStack } from './helpers/stack.ts';

let stack: Stack;
let vehicle: SeedVehicle;
let location: SeedLocation;
let evil: MqttClient;
let gatewayKey: KeyObject;
let gatewayKid: string;
const acks = new Map<string, Ack>();

beforeAll(async () => {
  stack = await startStack();
  vehicle = stack.seeds.vehicles.find((v) => v.make === 'Chevrolet' && v.year >= 2015) as SeedVehicle;
  location = stack.seeds.locations.find((l) => l.ownerId === vehicle.ownerId) as SeedLocation;
  const linked = await stack.request('POST', '/v1/vehicles', {
    vin: vehicle.vin,
    make: vehicle.make,
    model: vehicle.model,
    year: vehicle.year,
    provider: vehicle.provider,
    ownerId: vehicle.ownerId,
    consent: ['unlock', 'lock'],
  });
  expect(linked.status).toBe(201);
  gatewayKey = createPrivateKey(read(stack.pki.tokenSigningKey));
  gatewayKid = await kidFor(createPublicKey(gatewayKey));
  // The gateway's own certificate, under another replica name: what a stolen gateway credential gives.
  evil = await stack.connectAs('gateway-evil', {
    cert: read(stack.pki.gatewayCert),
    key: read(stack.pki.gatewayKey),
  });
  evil.on('message', (_topic, payload) => {
    // The car answers in its provider's dialect; the canonical ack (and its signature) comes out of it.
    const ack = providerAdapter(vehicle.provider).decodeAck(payload);
    acks.set(ack.commandId, ack);
  });
  await evil.subscribeAsync(ackTopic(vehicle.vin), { qos: 1 });
});

afterAll(async () => {
  await stack?.close();
});

let serial = 0;
const claims = (over: Record<string, unknown> = {}) => {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: TOKEN_ISSUER,
    aud: vehicle.vin,
    sub: 'dlv_evil',
    act: 'unlock',
    jti: `jti_evil_${++serial}`,
    cid: `cmd_evil_${serial}`,
    iat: now,
    nbf: now,
    exp: now + 60,
    ...over,
  };
};

/** Publishes a hand-made command as gateway-evil and returns the car's ack for it. */
async function sendEvil(token: string, c: { cid: string; sub: string; act: string }): Promise<Ack> {
  // Spoken in the car's own dialect, as a gateway would: the token is what is under attack here.
  const payload = providerAdapter(vehicle.provider).encodeToCar({
    v: 1,
    type: 'command',
    commandId: c.cid,
    deliveryId: c.sub,
    action: c.act as 'unlock' | 'lock',
    token,
  });
  await evil.publishAsync(commandTopic(vehicle.vin), payload, { qos: 1 });
  await expect.poll(() => acks.has(c.cid), { timeout: 5_000 }).toBe(true);
  return acks.get(c.cid) as Ack;
}

const car = () => stack.fleet.car(vehicle.vin).car;

describe('a stolen gateway credential (client gateway-evil) cannot open the car', () => {
  const cases: Array<{
    name: string;
    make: () => Promise<{ token: string; c: ReturnType<typeof claims> }>;
    code: string;
  }> = [
    {
      name: 'alg none',
      make: async () => {
        const c = claims();
        const h = Buffer.from(JSON.stringify({ alg: 'none', typ: TOKEN_TYP, kid: gatewayKid })).toString(
          'base64url',
        );
        return { token: `${h}.${Buffer.from(JSON.stringify(c)).toString('base64url')}.AAAA`, c };
      },
      code: 'TOKEN_ALG_NOT_ALLOWED',
    },
    {
      name: 'a token signed by its own key under the gateway kid',
      make: async () => {
        const c = claims();
        const attacker = generateKeyPairSync('ed25519').privateKey;
        return { token: jws({ alg: 'EdDSA', typ: TOKEN_TYP, kid: gatewayKid }, c, attacker), c };
      },
      code: 'TOKEN_SIGNATURE_INVALID',
    },
    {
      name: 'an embedded jwk of its own key',
      make: async () => {
        const c = claims();
        const attacker = generateKeyPairSync('ed25519');
        const jwk = attacker.publicKey.export({ format: 'jwk' });
        return {
          token: jws({ alg: 'EdDSA', typ: TOKEN_TYP, kid: gatewayKid, jwk }, c, attacker.privateKey),
          c,
        };
      },
      code: 'TOKEN_HEADER_FORBIDDEN',
    },
    {
      name: 'a genuine token captured for another car',
      make: async () => {
        const c = claims({ aud: OTHER_VIN });
        return { token: jws({ alg: 'EdDSA', typ: TOKEN_TYP, kid: gatewayKid }, c, gatewayKey), c };
      },
      code: 'TOKEN_AUDIENCE_MISMATCH',
    },
  ];

  it.each(cases)(
    '$name → $code, the car stays locked, and its ack is signed by its certified key',
    async ({ make, code }) => {
      expect(car().snapshot().locked).toBe(true);
      const { token, c } = await make();
      const ack = await sendEvil(token, c);
      expect(ack).toMatchObject({ outcome: 'refused', reason: code, locked: true });
      expect(car().snapshot().locked).toBe(true);
      const cert = new X509Certificate(read(stack.pki.vehicleCert(vehicle.vin)));
      expect(verifyAckSignature(ack, cert.publicKey)).toEqual({ ok: true });
    },
  );

  it('a command captured from a real delivery and re-sent → TOKEN_REPLAYED, and under another command id → TOKEN_BINDING_MISMATCH', async () => {
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
    const d = await stack.request('POST', '/v1/deliveries', {
      vin: vehicle.vin,
      locationId: loc.body.id,
      driverId: 'driver-7',
      packageIds: ['pkg-1'],
      window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
    });
    // The car confirms it is parked at the location before anything opens (PROTOCOL.md §3.5).
    expect((await stack.request('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
    const at = { lat: location.lat + 0.0003, lon: location.lon };
    const body = { driverId: 'driver-7', position: at, packageId: 'pkg-1' };
    expect((await stack.request('POST', `/v1/deliveries/${d.body.id}/unlock`, body)).status).toBe(200);
    expect(
      (await stack.request('POST', `/v1/deliveries/${d.body.id}/lock`, { driverId: 'driver-7' })).status,
    ).toBe(200);
    const view = await stack.request('GET', `/v1/deliveries/${d.body.id}`);
    const sentUnlock = view.body.timeline.find((e: { kind: string }) => e.kind === 'command_sent');
    const captured = stack.published.find(
      (p) =>
        p.topic === commandTopic(vehicle.vin) && p.payload.toString().includes(sentUnlock.detail.commandId),
    );
    expect(captured).toBeDefined();
    const command = providerAdapter(vehicle.provider).decodeToCar(captured?.payload as Buffer);
    if (command.type !== 'command') throw new Error('captured a query, not a command');
    acks.delete(command.commandId);
    // Re-encoded (not a byte-identical QoS duplicate, which the car answers from its cache without acting).
    await evil.publishAsync(commandTopic(vehicle.vin), `${String(captured?.payload)} `, { qos: 1 });
    await expect.poll(() => acks.get(command.commandId)?.reason, { timeout: 5_000 }).toBe('TOKEN_REPLAYED');
    expect(car().snapshot().locked).toBe(true);
    // The same token under a new command id is refused: the token is bound to the command it was minted for.
    const rebound = await sendEvil(command.token, {
      cid: 'cmd_rebound1',
      sub: command.deliveryId,
      act: 'unlock',
    });
    expect(rebound).toMatchObject({ outcome: 'refused', reason: 'TOKEN_BINDING_MISMATCH', locked: true });
  });
});

describe('key rotation over MQTT', () => {
  it('announce a new key, sign with it, retire the old one: the old key no longer opens the car', async () => {
    const { gateway } = stack;
    const oldKid = gateway.signingKeys.active().kid;
    const added = await gateway.signingKeys.add(generateKeyPairSync('ed25519').privateKey);
    const seq = Date.now();
    const announced = await gateway.keyRotation.announce(
      [vehicle.vin],
      await gateway.keyRotation.sign({ seq }),
    );
    expect(announced).toEqual([{ vin: vehicle.vin, result: 'accepted' }]);

    gateway.signingKeys.activate(added.kid);
    const retire = await gateway.keyRotation.sign({ seq: seq + 1, retire: { [oldKid]: Date.now() } });
    expect(await gateway.keyRotation.announce([vehicle.vin], retire)).toEqual([
      { vin: vehicle.vin, result: 'accepted' },
    ]);

    // A token under the old key, otherwise genuine, is now refused; one under the new key is not.
    const old = claims({ act: 'lock' });
    const refused = await sendEvil(jws({ alg: 'EdDSA', typ: TOKEN_TYP, kid: oldKid }, old, gatewayKey), old);
    expect(refused).toMatchObject({ outcome: 'refused', reason: 'TOKEN_KID_RETIRED' });
    expect(stack.fleet.car(vehicle.vin).keys.seq()).toBe(seq + 1);
  });
});

// The embedded broker and the cars on real mTLS: who may connect, which topics each identity reaches,
// and how a car refuses commands that carry bad tokens even when they come through the broker.
import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, createIssuer, issueVehicleIdentity } from '../certs/index.ts';
import {
  type Ack,
  type Action,
  ackTopic,
  buildClaims,
  type Command,
  commandTopic,
  kidFor,
  mintAccessToken,
  stateTopic,
  type TokenClaims,
} from '../protocols/index.ts';
import { providerAdapter } from '../protocols/providers/index.ts';
import { read, type Stack, startStack } from './helpers/stack.ts';

let stack: Stack;
let victim: string;
let attacker: string;

beforeAll(async () => {
  stack = await startStack();
  const cars = [...stack.fleet.cars.keys()];
  victim = cars[1] as string;
  attacker = cars[2] as string;
});

afterAll(async () => {
  await stack?.close();
});

const carTls = (vin: string) => ({
  cert: read(stack.pki.vehicleCert(vin)),
  key: read(stack.pki.vehicleKey(vin)),
});
const gatewayTls = () => ({ cert: read(stack.pki.gatewayCert), key: read(stack.pki.gatewayKey) });

/** A raw TLS handshake; resolves with whether the server accepted this client (TLS 1.3 refuses after "connect"). */
function handshake(opts: { cert?: string; key?: string; ca?: string }): Promise<'accepted' | 'refused'> {
  const url = new URL(stack.gateway.brokerUrl);
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: url.hostname,
      port: Number(url.port),
      ca: read(stack.pki.caCert),
      ...opts,
      servername: 'localhost',
    });
    let settled = false;
    const done = (r: 'accepted' | 'refused') => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(r);
    };
    socket.on('secureConnect', () => {
      // An MQTT CONNECT with a throwaway id: the broker answers CONNACK only to an accepted client.
      const id = Buffer.from('probe');
      const body = Buffer.concat([
        Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x1e, 0x00, id.length]),
        id,
      ]);
      socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
    });
    socket.on('data', () => done('accepted'));
    socket.on('error', () => done('refused'));
    socket.on('close', () => done('refused'));
  });
}

describe('TLS handshake', () => {
  it('accepts a car certificate from the project CA', async () => {
    expect(await handshake(carTls(victim))).toBe('accepted');
  });
  it('refuses a client without a certificate', async () => {
    expect(await handshake({})).toBe('refused');
  });
  it('refuses a certificate from another CA', async () => {
    const rogueCa = createCa({ commonName: 'Rogue CA' });
    const rogue = issueVehicleIdentity(createIssuer(rogueCa), victim);
    expect(await handshake({ cert: rogue.certPem, key: rogue.keyPem })).toBe('refused');
  });
});

async function nextMessage(client: MqttClient, topic: string, ms = 1_000): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.off('message', on);
      resolve(null);
    }, ms);
    const on = (t: string, payload: Buffer) => {
      if (t !== topic) return;
      clearTimeout(timer);
      client.off('message', on);
      resolve(payload);
    };
    client.on('message', on);
  });
}

describe("one car's certificate cannot reach another car", () => {
  it("cannot subscribe to another car's commands, acks or state", async () => {
    const client = await stack.connectAs(attacker, carTls(attacker));
    for (const topic of [
      commandTopic(victim),
      ackTopic(victim),
      stateTopic(victim),
      'vehicles/+/commands',
      '#',
    ]) {
      // SUBACK return code 0x80 (failure) for each refused filter [MQTT-3.9.3].
      await expect(client.subscribeAsync(topic, { qos: 1 }), topic).rejects.toMatchObject({
        packet: { granted: [128] },
      });
    }
  });

  it("cannot publish on another car's topics or any command topic", async () => {
    const spy = await stack.connectAs('gateway-spy', gatewayTls());
    await spy.subscribeAsync([ackTopic(victim), stateTopic(victim)], { qos: 1 });
    for (const topic of [
      ackTopic(victim),
      stateTopic(victim),
      commandTopic(victim),
      commandTopic(attacker),
    ]) {
      const before = stack.published.length;
      const client = await stack.connectAs(attacker, carTls(attacker));
      const arrived = nextMessage(spy, topic, 500);
      const carSawIt = nextMessage(client, topic, 500);
      client.publish(topic, JSON.stringify({ forged: true }), { qos: 0 });
      expect(await arrived, topic).toBeNull();
      expect(await carSawIt, topic).toBeNull();
      expect(
        stack.published.slice(before).some((p) => p.topic === topic),
        topic,
      ).toBe(false);
    }
    expect(stack.fleet.car(victim).car.snapshot().locked).toBe(true);
  });

  it('refuses a car whose client id is not its VIN', async () => {
    await expect(stack.connectAs(victim, carTls(attacker))).rejects.toThrow();
    await expect(stack.connectAs('#', carTls(attacker))).rejects.toThrow();
  });
});

describe('the car refuses bad tokens even when the broker delivers them', () => {
  let evil: MqttClient;
  let signingKey: ReturnType<typeof createPrivateKey>;
  let kid: string;
  const now = () => Date.now();

  beforeAll(async () => {
    // The gateway's own credential, as a compromised broker or stolen gateway cert would have it.
    evil = await stack.connectAs('gateway-evil', gatewayTls());
    await evil.subscribeAsync(ackTopic(victim), { qos: 1 });
    signingKey = createPrivateKey(read(stack.pki.tokenSigningKey));
    kid = await kidFor(signingKey);
  });

  const claimsFor = (action: Action, commandId: string, over: Partial<TokenClaims> = {}): TokenClaims => ({
    ...buildClaims({
      issuer: 'urn:gateway:gateway',
      vin: victim,
      deliveryId: 'dlv_test',
      action,
      commandId,
      jti: randomUUID(),
      nowMs: now(),
      ttlS: 60,
      notAfterMs: now() + 3_600_000,
    }),
    ...over,
  });

  async function send(action: Action, token: string, commandId: string, raw?: string): Promise<Ack> {
    const command: Command = { v: 1, type: 'command', commandId, deliveryId: 'dlv_test', action, token };
    // Spoken in the car's provider dialect, as the gateway does: the token is what is under attack.
    const dialect = providerAdapter(stack.fleet.car(victim).vehicle.provider);
    const reply = nextMessage(evil, ackTopic(victim), 3_000);
    evil.publish(commandTopic(victim), raw ?? dialect.encodeToCar(command), { qos: 1 });
    const payload = await reply;
    expect(payload).not.toBeNull();
    return dialect.decodeAck(payload as Buffer);
  }

  const cases: Array<[string, (id: string) => Promise<string>, Action, string]> = [
    [
      'a forged signature',
      async (id) =>
        mintAccessToken({
          privateKey: generateKeyPairSync('ed25519').privateKey,
          kid,
          claims: claimsFor('unlock', id),
        }),
      'unlock',
      'TOKEN_SIGNATURE_INVALID',
    ],
    [
      'a token for another VIN',
      async (id) =>
        mintAccessToken({ privateKey: signingKey, kid, claims: claimsFor('unlock', id, { aud: attacker }) }),
      'unlock',
      'TOKEN_AUDIENCE_MISMATCH',
    ],
    [
      'a lock token sent as an unlock',
      async (id) => mintAccessToken({ privateKey: signingKey, kid, claims: claimsFor('lock', id) }),
      'unlock',
      'TOKEN_ACTION_MISMATCH',
    ],
    [
      'an expired token',
      async (id) => {
        const past = Math.floor(now() / 1000) - 600;
        return mintAccessToken({
          privateKey: signingKey,
          kid,
          claims: claimsFor('unlock', id, { iat: past, nbf: past, exp: past + 60 }),
        });
      },
      'unlock',
      'TOKEN_EXPIRED',
    ],
    [
      'a not-yet-valid token',
      async (id) => {
        const later = Math.floor(now() / 1000) + 600;
        return mintAccessToken({
          privateKey: signingKey,
          kid,
          claims: claimsFor('unlock', id, { iat: later, nbf: later, exp: later + 60 }),
        });
      },
      'unlock',
      'TOKEN_NOT_YET_VALID',
    ],
  ];
  for (const [name, make, action, code] of cases) {
    it(`refuses ${name} with ${code} and stays locked`, async () => {
      const id = `cmd_${randomUUID().replaceAll('-', '')}`;
      const ack = await send(action, await make(id), id);
      expect(ack).toMatchObject({ outcome: 'refused', reason: code, locked: true, commandId: id });
      expect(stack.fleet.car(victim).car.snapshot().locked).toBe(true);
    });
  }

  it('refuses a replayed token with TOKEN_REPLAYED and stays locked', async () => {
    const unlockId = `cmd_${randomUUID().replaceAll('-', '')}`;
    const token = await mintAccessToken({
      privateKey: signingKey,
      kid,
      claims: claimsFor('unlock', unlockId),
    });
    expect(await send('unlock', token, unlockId)).toMatchObject({ outcome: 'executed', locked: false });
    const lockId = `cmd_${randomUUID().replaceAll('-', '')}`;
    const lockToken = await mintAccessToken({
      privateKey: signingKey,
      kid,
      claims: claimsFor('lock', lockId),
    });
    expect(await send('lock', lockToken, lockId)).toMatchObject({ outcome: 'executed', locked: true });
    // The same command again, re-encoded so it is not a transport duplicate: the jti was used.
    const dialect = providerAdapter(stack.fleet.car(victim).vehicle.provider);
    const replay = `${dialect.encodeToCar({ v: 1, type: 'command', commandId: unlockId, deliveryId: 'dlv_test', action: 'unlock', token })} `;
    expect(await send('unlock', token, unlockId, replay)).toMatchObject({
      outcome: 'refused',
      reason: 'TOKEN_REPLAYED',
      locked: true,
    });
    expect(stack.fleet.car(victim).car.snapshot().locked).toBe(true);
  });
});

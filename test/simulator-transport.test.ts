// Tests the car's MQTT transport and the fleet against a fake MQTT client: no network, fake timers.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IClientOptions, MqttClient } from 'mqtt';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type TrustedKeysFile, trustedJwkFor } from '../protocols/keys.ts';
import type { Action } from '../protocols/messages.ts';
import { onstar, volvoOnCall } from '../protocols/providers/index.ts';
import { buildClaims, mintAccessToken } from '../protocols/token.ts';
import { ackTopic, commandTopic, stateTopic } from '../protocols/topics.ts';
import { loadSeeds } from '../seeds/index.ts';
import { createSimulatedCar, type SimulatedCar } from '../simulator/car.ts';
import { replayFileFor, startFleet } from '../simulator/fleet.ts';
import { createMemoryKeyStore } from '../simulator/key-store.ts';
import { createMemoryReplayStore } from '../simulator/replay-store.ts';
import { createMemoryRevocationStore } from '../simulator/revocation-store.ts';
import { type ClientFactory, type ConnectCarDeps, connectCar } from '../simulator/transport.ts';

const NOW = Date.parse('2025-06-02T09:00:00Z');
const VIN = '1G1ZE5ST5KF100231';
const RELOCK_MS = 120_000;
const carKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
/** The key of a re-issued certificate: the car signs its acks with it after replaceCredentials. */
const NEW_KEY_PEM = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
  type: 'pkcs8',
  format: 'pem',
}) as string;

interface Sent {
  topic: string;
  payload: string;
  qos: number | undefined;
}

/** Just enough of mqtt.js's MqttClient for connectCar; the test drives connects, drops and deliveries. */
class FakeClient extends EventEmitter {
  connected = false;
  sent: Sent[] = [];
  events: string[] = [];
  subscriptions: Array<{ topic: string; qos: number }> = [];
  grantQos = 1;
  failConnect: Error | null = null;
  ended: boolean | null = null;
  reconnects: unknown[] = [];
  incomingStore = { name: 'in' };
  outgoingStore = { name: 'out' };
  stream = { destroy: vi.fn() };
  handleMessage = (_packet: unknown, done: () => void): void => done();

  constructor(readonly options: IClientOptions) {
    super();
  }

  connect(): this {
    queueMicrotask(() => {
      if (this.failConnect) {
        this.emit('error', this.failConnect);
        this.emit('close');
        return;
      }
      this.connected = true;
      this.emit('connect', { sessionPresent: false });
    });
    return this;
  }

  reconnect(stores: unknown): this {
    this.reconnects.push(stores);
    return this.connect();
  }

  drop(): void {
    this.connected = false;
    this.emit('close');
  }

  async subscribeAsync(topic: string, opts: { qos: number }) {
    this.subscriptions.push({ topic, qos: opts.qos });
    return [{ topic, qos: this.grantQos }];
  }

  publish(topic: string, payload: string, opts: { qos?: number }, cb?: (err?: Error) => void): this {
    this.sent.push({ topic, payload, qos: opts.qos });
    this.events.push(`publish ${topic.split('/')[2]}`);
    cb?.();
    return this;
  }

  async publishAsync(topic: string, payload: string, opts: { qos?: number }) {
    this.publish(topic, payload, opts);
    return undefined;
  }

  async endAsync(force?: boolean) {
    this.ended = force ?? false;
    this.connected = false;
    this.emit('close');
  }

  end(force?: boolean): this {
    this.ended = force ?? false;
    if (this.connected) {
      this.connected = false;
      queueMicrotask(() => this.emit('close'));
    }
    return this;
  }

  /** Delivers a command as mqtt.js would and resolves when the PUBACK would be sent. */
  deliver(payload: Buffer, topic = commandTopic(VIN)): Promise<void> {
    return new Promise((resolve) => {
      this.handleMessage({ cmd: 'publish', topic, payload, qos: 1, dup: false, retain: false }, () => {
        this.events.push('puback');
        resolve();
      });
    });
  }

  onTopic(kind: 'acks' | 'state'): Sent[] {
    return this.sent.filter((s) => s.topic.endsWith(`/${kind}`));
  }
}

let gatewayKey: KeyObject;
let trustedKeys: TrustedKeysFile;

beforeAll(async () => {
  const pair = generateKeyPairSync('ed25519');
  gatewayKey = pair.privateKey;
  trustedKeys = { keys: [await trustedJwkFor(pair.publicKey)] };
});

let serial = 0;
async function commandFor(action: Action, vin = VIN): Promise<Buffer> {
  const commandId = `cmd_${++serial}`;
  const kid = trustedKeys.keys[0]?.kid as string;
  const token = await mintAccessToken({
    privateKey: gatewayKey,
    kid,
    claims: buildClaims({
      issuer: 'urn:gateway:gateway',
      vin,
      deliveryId: 'dlv_1',
      action,
      commandId,
      jti: `jti_${serial}`,
      nowMs: NOW,
      ttlS: 60,
      notAfterMs: NOW + 3_600_000,
    }),
  });
  // The simulated car is a Chevrolet: its transport speaks OnStar.
  return Buffer.from(
    onstar.encodeToCar({ v: 1, type: 'command', commandId, deliveryId: 'dlv_1', action, token }),
  );
}

function factory(): { create: ClientFactory; clients: FakeClient[] } {
  const clients: FakeClient[] = [];
  const create: ClientFactory = (_url, options) => {
    const client = new FakeClient(options);
    clients.push(client);
    return client as unknown as MqttClient;
  };
  return { create, clients };
}

describe('connectCar', () => {
  let time: number;
  let car: SimulatedCar;
  let fake: ReturnType<typeof factory>;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    time = NOW;
    const replay = createMemoryReplayStore({ capacity: 10 });
    car = createSimulatedCar({
      vin: VIN,
      make: 'Chevrolet',
      model: 'Malibu',
      year: 2019,
      provider: 'onstar',
      initial: { position: { lat: 47.6, lon: -122.3 } },
      keys: createMemoryKeyStore(trustedKeys),
      replay,
      revocations: createMemoryRevocationStore({ capacity: 10, lastGoodTime: () => replay.lastGoodTime() }),
      signingKey: carKey,
      clock: () => time,
      failsafeRelockMs: RELOCK_MS,
    });
    fake = factory();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const connect = (extra: Partial<ConnectCarDeps> = {}) =>
    connectCar({
      car,
      brokerUrl: 'mqtts://127.0.0.1:8883',
      ca: 'CA',
      cert: 'CERT',
      key: 'KEY',
      reportIntervalMs: 30_000,
      random: () => 0,
      createClient: fake.create,
      ...extra,
    });

  it('connects as the VIN over TLS 1.3 with the presence will, subscribes at QoS 1 and reports', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    expect(client.options).toMatchObject({
      clientId: VIN,
      protocolVersion: 4,
      clean: false,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      reconnectPeriod: 0,
      manualConnect: true,
      ca: 'CA',
      cert: 'CERT',
      key: 'KEY',
      will: { topic: stateTopic(VIN), qos: 1, retain: false },
    });
    const will = client.options.will as { payload: Buffer };
    expect(JSON.parse(will.payload.toString())).toEqual({
      onstar: '1.0',
      connectivity: { vin: VIN, status: 'OFFLINE' },
    });
    expect(onstar.decodeState(will.payload)).toMatchObject({ type: 'presence', vin: VIN, online: false });
    expect(client.subscriptions).toEqual([{ topic: commandTopic(VIN), qos: 1 }]);
    expect(client.onTopic('state').map((s) => onstar.decodeState(s.payload).type)).toEqual(['state']);
    expect(conn.connected).toBe(true);
    expect(car.snapshot().online).toBe(true);
    await conn.close();
  });

  it('publishes the ack, then the state report, then lets the PUBACK go', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    client.events = [];
    await client.deliver(await commandFor('unlock'));
    expect(client.events).toEqual(['publish acks', 'publish state', 'puback']);
    const [ack] = client.onTopic('acks');
    expect(ack?.topic).toBe(ackTopic(VIN));
    expect(ack?.qos).toBe(1);
    expect(onstar.decodeAck(ack?.payload ?? '')).toMatchObject({ outcome: 'executed', locked: false });
    await conn.close();
  });

  it('re-sends the same ack for a redelivered command and sends no second state report', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    const raw = await commandFor('unlock');
    await client.deliver(raw);
    time += 1_000;
    const reports = client.onTopic('state').length;
    await client.deliver(raw);
    const acks = client.onTopic('acks');
    expect(acks).toHaveLength(2);
    expect(acks[1]?.payload).toBe(acks[0]?.payload);
    expect(client.onTopic('state')).toHaveLength(reports);
    await conn.close();
  });

  it('answers a state query with a state report echoing its nonce, and no ack', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    client.events = [];
    const nonce = 'AAAAAAAAAAAAAAAAAAAAAA';
    await client.deliver(Buffer.from(onstar.encodeToCar({ v: 1, type: 'state_query', nonce })));
    expect(client.events).toEqual(['publish state', 'puback']);
    expect(onstar.decodeState(client.onTopic('state').at(-1)?.payload ?? '')).toMatchObject({
      type: 'state',
      nonce,
      ignition: 'off',
      position: { lat: 47.6, lon: -122.3 },
    });
    await conn.close();
  });

  it('refuses a command in another dialect with DIALECT_MISMATCH, acked in its own', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    const foreign = onstar.decodeToCar(await commandFor('unlock'));
    await client.deliver(Buffer.from(volvoOnCall.encodeToCar(foreign)));
    const [ack] = client.onTopic('acks');
    expect(onstar.decodeAck(ack?.payload ?? '')).toMatchObject({
      outcome: 'refused',
      reason: 'DIALECT_MISMATCH',
      commandId: foreign.type === 'command' ? foreign.commandId : '',
      locked: true,
    });
    expect(car.snapshot().locked).toBe(true);
    // The canonical form is no dialect at all: nothing to address, so no ack.
    await client.deliver(Buffer.from(JSON.stringify(foreign)));
    expect(client.onTopic('acks')).toHaveLength(1);
    await conn.close();
  });

  it('refuses a request for another action (remote start) with ACTION_NOT_ALLOWED', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    const unlock = JSON.parse((await commandFor('unlock')).toString());
    unlock.commandRequest.type = 'start';
    await client.deliver(Buffer.from(JSON.stringify(unlock)));
    expect(onstar.decodeAck(client.onTopic('acks')[0]?.payload ?? '')).toMatchObject({
      outcome: 'refused',
      reason: 'ACTION_NOT_ALLOWED',
      action: 'start',
    });
    expect(car.snapshot().locked).toBe(true);
    await conn.close();
  });

  it('ignores a message on another topic, with no ack', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    await client.deliver(await commandFor('unlock'), commandTopic('YV1A22MK3F1900345'));
    expect(client.onTopic('acks')).toEqual([]);
    expect(car.snapshot().locked).toBe(true);
    await conn.close();
  });

  it('the tick timer fires the fail-safe relock and reports it; reports also go out periodically', async () => {
    const conn = await connect({ reportIntervalMs: 10_000 });
    const client = fake.clients[0] as FakeClient;
    await client.deliver(await commandFor('unlock'));
    const before = client.onTopic('state').length;
    time += RELOCK_MS;
    vi.advanceTimersByTime(250);
    const reports = client.onTopic('state').map((s) => onstar.decodeState(s.payload));
    expect(reports).toHaveLength(before + 1);
    expect(reports.at(-1)).toMatchObject({ type: 'state', locked: true });
    expect(car.snapshot().locked).toBe(true);

    vi.advanceTimersByTime(10_000);
    expect(client.onTopic('state')).toHaveLength(before + 2);
    const seqs = client.onTopic('state').map((s) => {
      const m = onstar.decodeState(s.payload);
      return m.type === 'state' ? m.seq : -1;
    });
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    await conn.close();
  });

  it('runs a tick timer only while a fail-safe relock is pending', async () => {
    const conn = await connect({ reportIntervalMs: 10_000 });
    const client = fake.clients[0] as FakeClient;
    const idle = vi.getTimerCount();
    await client.deliver(await commandFor('unlock'));
    expect(vi.getTimerCount()).toBe(idle + 1);
    await client.deliver(await commandFor('lock'));
    expect(vi.getTimerCount()).toBe(idle);
    await client.deliver(await commandFor('unlock'));
    time += RELOCK_MS;
    vi.advanceTimersByTime(250);
    expect(car.snapshot().locked).toBe(true);
    expect(vi.getTimerCount()).toBe(idle);
    await conn.close();
  });

  it('reconnects with backoff after a drop, keeping the stores, then resubscribes and reports', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    client.drop();
    expect(car.snapshot().online).toBe(false);
    expect(conn.connected).toBe(false);
    vi.advanceTimersByTime(249);
    expect(client.reconnects).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(client.reconnects).toEqual([
      { incomingStore: client.incomingStore, outgoingStore: client.outgoingStore },
    ]);
    await vi.waitFor(() => expect(client.subscriptions).toHaveLength(2));
    await vi.waitFor(() => expect(client.onTopic('state')).toHaveLength(2));
    expect(car.snapshot().online).toBe(true);
    await conn.close();
  });

  it('close announces presence, disconnects cleanly, clears every timer and does not reconnect', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    await conn.close();
    const last = client.sent.at(-1);
    expect(last?.topic).toBe(stateTopic(VIN));
    expect(onstar.decodeState(last?.payload ?? '')).toMatchObject({ type: 'presence', online: false });
    expect(client.ended).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(client.reconnects).toHaveLength(0);
    await conn.close();
  });

  it('close while disconnected drops the session so the broker sends the will', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    client.connected = false;
    await conn.close();
    expect(client.ended).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a failed first connect rejects with SIM_CONNECT_FAILED', async () => {
    const create: ClientFactory = (url, options) => {
      const client = fake.create(url, options) as unknown as FakeClient;
      client.failConnect = new Error('certificate unknown');
      return client as unknown as MqttClient;
    };
    await expect(connect({ createClient: create })).rejects.toMatchObject({ code: 'SIM_CONNECT_FAILED' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a refused subscription rejects with SIM_SUBSCRIBE_REFUSED', async () => {
    const create: ClientFactory = (url, options) => {
      const client = fake.create(url, options) as unknown as FakeClient;
      client.grantQos = 128;
      return client as unknown as MqttClient;
    };
    await expect(connect({ createClient: create })).rejects.toMatchObject({ code: 'SIM_SUBSCRIBE_REFUSED' });
  });
});

describe('connection status', () => {
  let car: SimulatedCar;
  let fake: ReturnType<typeof factory>;
  const warnings: Array<Record<string, unknown>> = [];
  const logger = { info() {}, error() {}, warn: (fields: Record<string, unknown>) => warnings.push(fields) };

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    warnings.length = 0;
    const statusReplay = createMemoryReplayStore({ capacity: 10 });
    car = createSimulatedCar({
      vin: VIN,
      make: 'Chevrolet',
      model: 'Malibu',
      year: 2019,
      provider: 'onstar',
      initial: { position: { lat: 47.6, lon: -122.3 } },
      keys: createMemoryKeyStore(trustedKeys),
      replay: statusReplay,
      revocations: createMemoryRevocationStore({
        capacity: 10,
        lastGoodTime: () => statusReplay.lastGoodTime(),
      }),
      signingKey: carKey,
      clock: () => NOW,
    });
    fake = factory();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const connect = () =>
    connectCar({
      car,
      brokerUrl: 'mqtts://127.0.0.1:8883',
      ca: 'CA',
      cert: 'CERT',
      key: 'KEY',
      reportIntervalMs: 30_000,
      random: () => 0,
      backoff: { initialMs: 100, maxMs: 400 },
      logger,
      createClient: fake.create,
    });
  const refusedByBroker = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
  /** Runs the pending reconnect timer (at most backoff.maxMs away) and lets the fake's connect settle. */
  const nextAttempt = async () => {
    vi.advanceTimersByTime(400);
    await Promise.resolve();
    await Promise.resolve();
  };

  it('reports possibly_revoked after three closes before CONNACK, and connected again after one', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    const seen: string[] = [];
    conn.onStatus((status) => seen.push(status));
    expect(conn.status).toBe('connected');
    client.failConnect = refusedByBroker();
    client.drop(); // the broker closed a live session: not a refusal yet
    expect(conn.status).toBe('reconnecting');
    await nextAttempt();
    await nextAttempt();
    expect(conn.status).toBe('reconnecting');
    expect(warnings.some((w) => w.code === 'POSSIBLY_REVOKED')).toBe(false);
    await nextAttempt();
    expect(conn.status).toBe('possibly_revoked');
    expect(warnings.filter((w) => w.code === 'POSSIBLY_REVOKED')).toEqual([
      { vin: VIN, code: 'POSSIBLY_REVOKED', closesBeforeConnack: 3 },
    ]);
    await nextAttempt();
    expect(conn.status).toBe('possibly_revoked');
    expect(warnings.filter((w) => w.code === 'POSSIBLY_REVOKED')).toHaveLength(1);
    client.failConnect = null;
    await nextAttempt();
    expect(conn.status).toBe('connected');
    expect(seen).toEqual(['reconnecting', 'possibly_revoked', 'connected']);
    await conn.close();
    expect(conn.status).toBe('closed');
  });

  it('does not suspect the certificate when the broker cannot be reached', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    client.failConnect = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    client.drop();
    for (let i = 0; i < 5; i++) await nextAttempt();
    expect(conn.status).toBe('reconnecting');
    expect(warnings.some((w) => w.code === 'POSSIBLY_REVOKED')).toBe(false);
    await conn.close();
  });

  it('replaceCredentials reconnects at once with the new certificate, after a clean DISCONNECT', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    await conn.replaceCredentials({ cert: 'NEW CERT', key: NEW_KEY_PEM });
    expect(client.ended).toBe(false);
    expect(client.options).toMatchObject({ cert: 'NEW CERT', key: NEW_KEY_PEM });
    expect(client.reconnects).toHaveLength(1);
    expect(conn.status).toBe('connected');
    await vi.waitFor(() => expect(client.subscriptions).toHaveLength(2));
    await conn.close();
  });

  it('replaceCredentials rejects when the broker refuses the new certificate, then retries with backoff', async () => {
    const conn = await connect();
    const client = fake.clients[0] as FakeClient;
    client.failConnect = refusedByBroker();
    await expect(conn.replaceCredentials({ cert: 'BAD', key: NEW_KEY_PEM })).rejects.toMatchObject({
      code: 'SIM_CONNECT_FAILED',
    });
    expect(client.reconnects).toHaveLength(1);
    client.failConnect = null;
    await nextAttempt();
    expect(client.reconnects).toHaveLength(2);
    expect(conn.status).toBe('connected');
    expect(client.options.cert).toBe('BAD');
    await conn.close();
  });
});

describe('startFleet', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sim-fleet-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  // The fake client never uses the key for TLS; the car signs its acks with it, so it must be a P-256 key.
  const keyPem = carKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const pki = { ca: 'CA', certFor: (vin: string) => ({ cert: `cert ${vin}`, key: keyPem }) };

  it('simulates only catalog-compatible vehicles, each with its own state files and certificate', async () => {
    const { vehicles } = loadSeeds();
    const fake = factory();
    const fleet = await startFleet({
      brokerUrl: 'mqtts://127.0.0.1:8883',
      vehicles,
      pki,
      trustedKeys,
      dataDir: dir,
      now: () => NOW,
      createClient: fake.create,
    });
    expect(fleet.skipped.map((s) => s.vin).sort()).toEqual(['1FA6P8TH6J5130557', '1G1ZD5ST4EF120901']);
    expect(fleet.cars.size).toBe(vehicles.length - 2);
    expect(fake.clients.map((c) => c.options.clientId).sort()).toEqual([...fleet.cars.keys()].sort());
    expect(fake.clients.every((c) => c.options.cert === `cert ${c.options.clientId}`)).toBe(true);

    const handle = fleet.car(VIN);
    const client = fake.clients.find((c) => c.options.clientId === VIN) as FakeClient;
    await client.deliver(await commandFor('unlock'));
    expect(handle.car.snapshot().locked).toBe(false);
    expect(existsSync(replayFileFor(dir, VIN))).toBe(true);
    expect(handle.replay.lastGoodTime()).toBe(NOW);
    expect(() => fleet.car('1FA6P8TH6J5130557')).toThrow(
      expect.objectContaining({ code: 'SIM_UNKNOWN_VIN' }),
    );

    await fleet.stop();
    expect(fake.clients.every((c) => c.ended === false)).toBe(true);
  });

  it('includes incompatible vehicles when told to, and refuses a VIN listed twice', async () => {
    const { vehicles } = loadSeeds();
    const fake = factory();
    const fleet = await startFleet({
      brokerUrl: 'mqtts://127.0.0.1:8883',
      vehicles: vehicles.slice(-2),
      pki,
      trustedKeys,
      dataDir: dir,
      includeIncompatible: true,
      createClient: fake.create,
    });
    expect(fleet.cars.size).toBe(2);
    await fleet.stop();
    const twice = [vehicles[0], vehicles[0]].filter((v) => v !== undefined);
    await expect(
      startFleet({
        brokerUrl: 'mqtts://h:1',
        vehicles: twice,
        pki,
        trustedKeys,
        dataDir: dir,
        createClient: fake.create,
      }),
    ).rejects.toMatchObject({ code: 'SIM_ARGS_INVALID' });
  });

  it('connects at most connectConcurrency cars at once, reports progress and uses the given replay stores', async () => {
    const vehicles = loadSeeds().vehicles.slice(0, 6);
    const fake = factory();
    const progress: Array<[number, number]> = [];
    let maxInFlight = 0;
    const create: ClientFactory = (url, options) => {
      maxInFlight = Math.max(maxInFlight, fake.clients.length + 1 - progress.length);
      return fake.create(url, options);
    };
    const stores: string[] = [];
    const fleet = await startFleet({
      brokerUrl: 'mqtts://h:1',
      vehicles,
      pki,
      trustedKeys,
      dataDir: dir,
      includeIncompatible: true,
      now: () => NOW,
      connectConcurrency: 2,
      onConnected: (done, total) => progress.push([done, total]),
      replayStoreFor: (vin) => {
        stores.push(vin);
        return createMemoryReplayStore({ capacity: 10 });
      },
      createClient: create,
    });
    expect(fleet.cars.size).toBe(6);
    expect(maxInFlight).toBe(2);
    expect(progress).toEqual([1, 2, 3, 4, 5, 6].map((n) => [n, 6]));
    expect(stores.sort()).toEqual(vehicles.map((v) => v.vin).sort());
    await fake.clients.find((c) => c.options.clientId === VIN)?.deliver(await commandFor('unlock'));
    expect(fleet.car(VIN).car.snapshot().locked).toBe(false);
    expect(existsSync(replayFileFor(dir, VIN))).toBe(false);
    await fleet.stop();
  });

  it('closes the cars that connected when another one fails', async () => {
    const { vehicles } = loadSeeds();
    const fake = factory();
    const create: ClientFactory = (url, options) => {
      const client = fake.create(url, options) as unknown as FakeClient;
      if (options.clientId === VIN) client.failConnect = new Error('refused');
      return client as unknown as MqttClient;
    };
    await expect(
      startFleet({
        brokerUrl: 'mqtts://h:1',
        vehicles: vehicles.slice(0, 3),
        pki,
        trustedKeys,
        dataDir: dir,
        createClient: create,
      }),
    ).rejects.toMatchObject({ code: 'SIM_CONNECT_FAILED' });
    expect(fake.clients.filter((c) => c.options.clientId !== VIN).every((c) => c.ended === false)).toBe(true);
  });
});

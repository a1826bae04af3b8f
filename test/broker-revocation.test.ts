// The embedded broker's revocation, rotation and limits, on a whole stack: gateway, broker and the simulated fleet.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCa,
  createCrl,
  createIssuer,
  issueVehicleIdentity,
  reissueVehicle,
  revokeVehicle,
} from '../certs/index.ts';
import { type Broker, type BrokerRefusal, createBroker } from '../gateway/broker/broker.ts';
import { BrokerError } from '../gateway/broker/errors.ts';
import { stateTopic } from '../protocols/index.ts';
import type { ConnectionStatus } from '../simulator/index.ts';
import { COMPLETED, runDelivery } from './helpers/delivery.ts';
import {
  CONNACK_ACCEPTED,
  connectClient,
  connectPacket,
  publishSettled,
  rawSession,
  type TestClient,
} from './helpers/mqtt.ts';
import { read, type Stack, startStack } from './helpers/stack.ts';

const DELIVERED = '1G1ZE5ST5KF100231';
const REVOKED = '1G4ZR5SS4JU300882';
const ROTATED = '1GNSKBKC3FR200114';
const MALFORMED_THEN = 'YV1A22MK3F1900345';
// Not in the simulated fleet (the catalog does not support them), but they have certificates.
const OUTSIDER = '1G1ZD5ST4EF120901';
const SENDER = '1FA6P8TH6J5130557';
const DAY = 86_400_000;

let stack: Stack;
let broker: Broker;
const refusals: BrokerRefusal[] = [];

beforeAll(async () => {
  // Fast reconnects, so that a refused car gets to possibly_revoked in milliseconds.
  stack = await startStack({}, { fleet: { backoff: { initialMs: 10, maxMs: 40 } } });
  broker = stack.gateway.broker as Broker;
  broker.onRefusal((r) => refusals.push(r));
});

afterAll(async () => {
  await stack?.close();
});

const identity = (vin: string) => ({
  cert: read(stack.pki.vehicleCert(vin)),
  key: read(stack.pki.vehicleKey(vin)),
});
const ca = () => read(stack.pki.caCert);
const url = () => stack.gateway.brokerUrl;
const untilStatus = (vin: string, wanted: ConnectionStatus): Promise<void> =>
  new Promise((resolve) => {
    const connection = stack.fleet.car(vin).connection;
    if (connection.status === wanted) return resolve();
    const stop = connection.onStatus((status) => {
      if (status !== wanted) return;
      stop();
      resolve();
    });
  });
const untilRefusal = (match: (r: BrokerRefusal) => boolean): Promise<BrokerRefusal> =>
  new Promise((resolve) => {
    const found = refusals.find(match);
    if (found) return resolve(found);
    const stop = broker.onRefusal((r) => {
      if (!match(r)) return;
      stop();
      resolve(r);
    });
  });

describe('revocation on a running broker', () => {
  it('`certs revoke` drops the car live session; the car reports possibly_revoked; others are served', async () => {
    expect(stack.fleet.car(REVOKED).connection.status).toBe('connected');
    const { serial } = await revokeVehicle({ dir: stack.pki.dir, vin: REVOKED });
    // The gateway watches crl.pem: no call into the broker here.
    await untilRefusal((r) => r.stage === 'session' && r.identity === REVOKED);
    await untilStatus(REVOKED, 'possibly_revoked');
    expect(refusals).toContainEqual(
      expect.objectContaining({ stage: 'tls', code: 'CERT_REVOKED', identity: REVOKED, serial }),
    );
    expect(stack.fleet.car(DELIVERED).connection.status).toBe('connected');
    expect(await runDelivery(stack, DELIVERED)).toEqual(COMPLETED);
  });

  it('a resumed TLS session of a revoked certificate is refused by the serial check', async () => {
    const first = await rawSession(url(), { ca: ca(), ...identity(OUTSIDER) });
    first.write(connectPacket(OUTSIDER));
    expect((await first.receivedAtLeast(4)).subarray(0, 4)).toEqual(CONNACK_ACCEPTED);
    const ticket = first.session();
    expect(ticket).toBeDefined();
    first.socket.end();
    await first.closed;

    await revokeVehicle({ dir: stack.pki.dir, vin: OUTSIDER });
    // Applied here rather than by the file watch, so the resumption below surely runs under it.
    broker.reloadCrl(read(stack.pki.crl));
    const resumed = await rawSession(url(), { ca: ca(), ...identity(OUTSIDER), session: ticket });
    // The TLS layer resumed without looking at the certificate or the CRL (RFC 8446 §2.2)...
    expect(resumed.socket.isSessionReused()).toBe(true);
    resumed.write(connectPacket(OUTSIDER));
    await resumed.closed;
    // ...and the broker refused it anyway, before MQTT.
    expect(resumed.received()).toHaveLength(0);
    expect(refusals).toContainEqual(
      expect.objectContaining({ stage: 'tls', code: 'CERT_REVOKED', identity: OUTSIDER, resumed: true }),
    );
  });

  it('rotation: a new certificate, the car reconnects with it, the old serial is revoked, deliveries go on', async () => {
    const old = identity(ROTATED);
    const rotated = await reissueVehicle({ dir: stack.pki.dir, vin: ROTATED });
    const connection = stack.fleet.car(ROTATED).connection;
    await connection.replaceCredentials(identity(ROTATED));
    expect(connection.status).toBe('connected');

    await revokeVehicle({ dir: stack.pki.dir, vin: ROTATED, serial: rotated.previousSerial as string });
    const reload = broker.reloadCrl(read(stack.pki.crl));
    expect(reload.disconnected).toEqual([]);
    expect(refusals.filter((r) => r.identity === ROTATED)).toEqual([]);
    expect(connection.status).toBe('connected');

    const stale = await connectClient(url(), { ca: ca(), ...old }, { clientId: ROTATED });
    expect(stale.outcome).toEqual({ kind: 'closed' });
    expect(refusals).toContainEqual(
      expect.objectContaining({ stage: 'tls', code: 'CERT_REVOKED', serial: rotated.previousSerial }),
    );
    expect(await runDelivery(stack, ROTATED)).toEqual(COMPLETED);
  });
});

describe('malformed packets on the stack broker', () => {
  it('drops each sender and then completes a whole delivery', async () => {
    const afterConnect = (bytes: number[]) => [...connectPacket(SENDER), ...bytes];
    const attempts = [
      [0x10, 0x04, 0x00, 0x04, 0x4d, 0x51], // truncated CONNECT
      afterConnect([0x30, 0x05, 0x00, 0x00, 0x61, 0x62, 0x63]), // zero-length topic
      afterConnect([0x30, 0xff, 0xff, 0xff, 0x7f]), // oversized remaining length
      afterConnect([0x82, 0x02, 0x00, 0x01]), // SUBSCRIBE with no topics
    ];
    for (const bytes of attempts) {
      const session = await rawSession(url(), { ca: ca(), ...identity(SENDER) });
      session.write(bytes);
      await session.closed;
      expect(session.received().length === 0 || session.received().equals(CONNACK_ACCEPTED)).toBe(true);
    }
    expect(refusals.filter((r) => r.stage === 'wire' && r.identity === SENDER).map((r) => r.code)).toEqual([
      'PACKET_TOO_LARGE',
      'PACKET_MALFORMED',
    ]);
    expect(await runDelivery(stack, MALFORMED_THEN)).toEqual(COMPLETED);
  });
});

describe('a broker of its own', () => {
  let own: Broker;
  let ownRefusals: BrokerRefusal[];
  let now = Date.now();
  const open: TestClient[] = [];
  const ownUrl = () => `mqtts://127.0.0.1:${own.port}`;

  beforeAll(async () => {
    own = await createBroker({
      tls: {
        ca: ca(),
        cert: read(stack.pki.brokerCert),
        key: read(stack.pki.brokerKey),
        crl: read(stack.pki.crl),
      },
      host: '127.0.0.1',
      port: 0,
      logger: pino({ level: 'silent' }),
      limits: { publishRate: { vehicle: { burst: 3, perSecond: 1 }, gateway: { burst: 10, perSecond: 10 } } },
      now: () => now,
    });
    ownRefusals = [];
    own.onRefusal((r) => ownRefusals.push(r));
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await own?.close();
  });
  const car = async (vin: string) => {
    const client = await connectClient(ownUrl(), { ca: ca(), ...identity(vin) }, { clientId: vin });
    open.push(client);
    return client;
  };

  it('limits PUBLISH per identity: past the burst the car is dropped, and reconnecting refills nothing', async () => {
    const first = await car(DELIVERED);
    expect(first.outcome).toEqual({ kind: 'connected' });
    const results: string[] = [];
    for (let i = 0; i < 4; i++)
      results.push(await publishSettled(first, stateTopic(DELIVERED), `{"n":${i}}`));
    expect(results).toEqual(['acked', 'acked', 'acked', 'closed']);
    expect(ownRefusals).toContainEqual(
      expect.objectContaining({ stage: 'wire', code: 'RATE_LIMITED', identity: DELIVERED }),
    );
    const second = await car(DELIVERED);
    expect(await publishSettled(second, stateTopic(DELIVERED), '{}')).toBe('closed');
    now += 1_000; // one token back
    const third = await car(DELIVERED);
    expect(await publishSettled(third, stateTopic(DELIVERED), '{}')).toBe('acked');
  });

  it('refuses a certificate of this CA that names no car or gateway (IDENTITY_UNKNOWN)', async () => {
    const issuer = createIssuer({ certPem: ca(), keyPem: read(stack.pki.caKey) });
    const stranger = issuer.issue({ commonName: 'not-a-car' });
    const client = await connectClient(
      ownUrl(),
      { ca: ca(), cert: stranger.certPem, key: stranger.keyPem },
      { clientId: 'not-a-car' },
    );
    expect(client.outcome).toEqual({ kind: 'closed' });
    expect(ownRefusals).toContainEqual(expect.objectContaining({ stage: 'tls', code: 'IDENTITY_UNKNOWN' }));
  });

  it('refuses a CRL that does not verify, is older or has expired, and keeps the one in use', async () => {
    const caMaterial = { certPem: ca(), keyPem: read(stack.pki.caKey) };
    const window = { thisUpdate: new Date(now - 1000), nextUpdate: new Date(now + DAY) };
    const codeOf = (pem: string): string => {
      try {
        own.reloadCrl(pem);
        return 'applied';
      } catch (err) {
        return err instanceof BrokerError ? err.code : String(err);
      }
    };
    expect(codeOf('not a CRL')).toBe('CRL_INVALID');
    expect(
      codeOf(
        createCrl({
          ...window,
          ca: createCa({ commonName: 'Curbside Key Dev CA' }),
          revoked: [],
          crlNumber: 99,
        }),
      ),
    ).toBe('CRL_INVALID');
    expect(codeOf(createCrl({ ...window, ca: caMaterial, revoked: [], crlNumber: 1 }))).toBe('CRL_STALE');
    expect(
      codeOf(
        createCrl({
          ca: caMaterial,
          revoked: [],
          thisUpdate: new Date(now - 2 * DAY),
          nextUpdate: new Date(now - DAY),
          crlNumber: 1_000,
        }),
      ),
    ).toBe('CRL_EXPIRED');
    // Still the CRL it started with: REVOKED was on it, DELIVERED was not.
    expect((await car(REVOKED)).outcome).toEqual({ kind: 'closed' });
    expect((await car(MALFORMED_THEN)).outcome).toEqual({ kind: 'connected' });
  });

  it('does not start without a CRL it can verify', async () => {
    const attempt = createBroker({
      tls: { ca: ca(), cert: read(stack.pki.brokerCert), key: read(stack.pki.brokerKey), crl: 'garbage' },
      host: '127.0.0.1',
      port: 0,
      logger: pino({ level: 'silent' }),
    });
    await expect(attempt).rejects.toMatchObject({ code: 'CRL_INVALID' });
  });

  it('refuses a certificate issued by another CA with the same name, with its reason', async () => {
    const foreign = issueVehicleIdentity(
      createIssuer(createCa({ commonName: 'Curbside Key Dev CA' })),
      DELIVERED,
    );
    const client = await connectClient(
      ownUrl(),
      { ca: ca(), cert: foreign.certPem, key: foreign.keyPem },
      { clientId: DELIVERED },
    );
    expect(client.outcome).toEqual({ kind: 'closed' });
    expect(ownRefusals).toContainEqual(
      expect.objectContaining({
        stage: 'tls',
        code: 'CERT_UNTRUSTED',
        detail: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      }),
    );
  });
});

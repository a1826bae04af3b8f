// Gateway replicas on one PostgreSQL schema and one Mosquitto: each its own broker session; any replica answers any
// request with the result one replica gives (one unlock per delivery, the Idempotency-Key, the per-key limit); an
// ack that reaches one replica wakes the request waiting on another; a background job's lease passes to another
// replica when its holder is killed.
import { join } from 'node:path';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureReplicaIdentity } from '../certs/index.ts';
import { type Gateway, startGateway } from '../gateway/gateway.ts';
import { parseConfig } from '../gateway/platform/config.ts';
import { loadGatewayMaterial } from '../gateway/platform/material.ts';
import type { ConnectMqtt } from '../gateway/vehicles/link.ts';
import { isProbeTopic } from '../protocols/index.ts';
import { type ChildGateway, startChildGateway } from './helpers/child-gateway.ts';
import {
  DRIVER_ID,
  linkSeeded,
  PACKAGE_ID,
  registerSeededLocation,
  scheduleParked,
} from './helpers/delivery.ts';
import { type Mosquitto, startMosquitto } from './helpers/mosquitto.ts';
import { freshPgSchema, pgUrlWithSchema } from './helpers/pg-schema.ts';
import { type Reply, type Stack, startStack } from './helpers/stack.ts';

let stack: Stack;
let mosquitto: Mosquitto;
let b: Gateway;
let dropSchema: () => Promise<void>;
let databaseUrl: string;
/** While set, replica B's broker session loses every ack on the way (its requests learn of them only by relay). */
let dropAcksAtB = false;
/** While set, B's session loses every state report, the answers to its own state queries included. */
let dropStateAtB = false;
const children: ChildGateway[] = [];

const PER_KEY_PER_MIN = 150;

/** mqtt.connect, but losing the acks addressed to this session while dropAcksAtB is set. */
const losingAcks: ConnectMqtt = (url, options) => {
  const client = mqtt.connect(url, options);
  const emit = client.emit.bind(client) as (event: string, ...args: unknown[]) => boolean;
  (client as unknown as { emit: typeof emit }).emit = (event, ...args) =>
    event === 'message' &&
    // Cars' messages only: the gateway's own subscription probes (PROTOCOL.md §2.1) still come back.
    !isProbeTopic(String(args[0])) &&
    ((dropAcksAtB && String(args[0]).endsWith('/acks')) ||
      (dropStateAtB && String(args[0]).endsWith('/state')))
      ? true
      : emit(event, ...args);
  return client;
};

beforeAll(async () => {
  const schema = await freshPgSchema();
  dropSchema = schema.drop;
  databaseUrl = pgUrlWithSchema(schema.schema);
  const shared = {
    DATABASE_URL: databaseUrl,
    RATE_LIMIT_PER_KEY_PER_MIN: String(PER_KEY_PER_MIN),
  };
  stack = await startStack(
    { ...shared, GATEWAY_REPLICA: 'r1' },
    {
      externalBroker: async (pki, dir) => {
        // Each replica but the first has its own certificate, so Mosquitto gives it its own session.
        for (const replica of ['r2', 'r3', 'r4']) await ensureReplicaIdentity({ dir: pki.dir, replica });
        mosquitto = await startMosquitto(pki, dir);
        return mosquitto;
      },
    },
  );
  b = await startGateway({
    config: parseConfig({
      NODE_ENV: 'test',
      HTTP_PORT: '0',
      DATA_DIR: join(stack.dir, 'data-b'),
      LOG_LEVEL: 'silent',
      COMMAND_TIMEOUT_MS: '3000',
      WATCHDOG_INTERVAL_S: '3600',
      MQTT_URL: mosquitto.url,
      GATEWAY_REPLICA: 'r2',
      ...shared,
    }),
    material: await loadGatewayMaterial(stack.pki, 'r2'),
    catalog: stack.seeds.catalog,
    logger: pino({ level: process.env.DEBUG_B ? 'error' : 'silent' }),
    connectMqtt: losingAcks,
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(children.map((c) => c.kill9()));
  await b?.close();
  await stack?.close();
  await dropSchema?.();
});

async function call(
  gateway: Gateway,
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
  apiKey = stack.apiKey,
): Promise<Reply> {
  const res = await gateway.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${apiKey}`, ...headers },
    ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
  });
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : null };
}

const unlockBody = (location: { lat: number; lon: number }) => ({
  driverId: DRIVER_ID,
  position: { lat: location.lat + 0.0003, lon: location.lon },
  packageId: PACKAGE_ID,
});

/** A delivery ready to open (linked car, its owner's location, parked), scheduled through replica A. */
async function readyDelivery(vin: string) {
  const vehicle = await linkSeeded(stack, vin);
  const { id: locationId, location } = await registerSeededLocation(stack, vehicle.ownerId);
  return { id: await scheduleParked(stack, vin, locationId), location };
}

const commandsOf = (deliveryId: string, action: string) =>
  stack.gateway.store.db
    .selectFrom('commands')
    .select(['id', 'jti', 'status'])
    .where('delivery_id', '=', deliveryId)
    .where('action', '=', action)
    .execute();

describe('gateway replicas on one PostgreSQL store and one Mosquitto', () => {
  it('hold one broker session each: gateway-r2 beside the first, neither taking over the other', async () => {
    await b.link.untilConnected();
    await stack.gateway.link.untilConnected();
    expect(mosquitto.log()).toMatch(/ as gateway-r2 /);
    expect(mosquitto.log()).toMatch(/ as gateway /);
    expect(mosquitto.log()).not.toMatch(/already connected, closing old connection/);
    expect(stack.gateway.link.connected() && b.link.connected()).toBe(true);
  });

  it('refuses to start a second live replica under a name already running, and starts nothing', async () => {
    const before = await stack.gateway.store.db.selectFrom('api_keys').select('id').execute();
    const again = startGateway({
      config: parseConfig({
        NODE_ENV: 'test',
        HTTP_PORT: '0',
        DATA_DIR: join(stack.dir, 'data-b2'),
        LOG_LEVEL: 'silent',
        MQTT_URL: mosquitto.url,
        GATEWAY_REPLICA: 'r2',
        DATABASE_URL: databaseUrl,
      }),
      material: await loadGatewayMaterial(stack.pki, 'r2'),
      catalog: stack.seeds.catalog,
      logger: pino({ level: 'silent' }),
    });
    await expect(again).rejects.toMatchObject({ code: 'REPLICA_NAME_TAKEN' });
    // The running r2 keeps its session and its name.
    expect(b.link.connected()).toBe(true);
    expect(await stack.gateway.store.db.selectFrom('api_keys').select('id').execute()).toEqual(before);
    expect(mosquitto.log()).not.toMatch(/already connected, closing old connection/);
  });

  it('opens the car once when the same unlock reaches two replicas at the same moment, round after round', async () => {
    const vins = stack.seeds.vehicles.slice(0, 6).map((v) => v.vin);
    const jtis = new Set<string>();
    for (const vin of vins) {
      const { id, location } = await readyDelivery(vin);
      const replies = await Promise.all([
        call(stack.gateway, 'POST', `/v1/deliveries/${id}/unlock`, unlockBody(location)),
        call(b, 'POST', `/v1/deliveries/${id}/unlock`, unlockBody(location)),
      ]);
      const statuses = replies.map((r) => r.status).sort();
      expect(statuses[0]).toBe(200);
      // The other is refused: the delivery was busy on the other replica, or its one unlock was used.
      expect([403, 409]).toContain(statuses[1]);
      const loser = replies.find((r) => r.status !== 200);
      expect(['DELIVERY_NOT_ACTIVE', 'UNLOCK_LIMIT_REACHED']).toContain(loser?.body.code);
      const unlocks = await commandsOf(id, 'unlock');
      expect(unlocks).toHaveLength(1);
      for (const c of unlocks) jtis.add(c.jti);
      // The lock goes through the other replica.
      expect((await call(b, 'POST', `/v1/deliveries/${id}/lock`, { driverId: DRIVER_ID })).status).toBe(200);
      expect((await call(stack.gateway, 'GET', `/v1/deliveries/${id}`)).body.status).toBe('completed');
      expect(stack.fleet.car(vin).car.snapshot().locked).toBe(true);
    }
    // No shared counter to desynchronise (Tesla vehicle-command #197): each command has its own random jti.
    expect(jtis.size).toBe(vins.length);
  });

  it('honours an Idempotency-Key across replicas, one after the other and at once', async () => {
    const vehicle = await linkSeeded(stack, stack.seeds.vehicles[6]?.vin ?? '');
    const { id: locationId } = await registerSeededLocation(stack, vehicle.ownerId);
    const now = Date.now();
    const body = {
      vin: vehicle.vin,
      locationId,
      driverId: DRIVER_ID,
      packageIds: [PACKAGE_ID],
      window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
    };
    const count = async () =>
      (
        await stack.gateway.store.db
          .selectFrom('deliveries')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n;
    const before = Number(await count());
    const first = await call(stack.gateway, 'POST', '/v1/deliveries', body, {
      'idempotency-key': 'replica-key-1',
    });
    const again = await call(b, 'POST', '/v1/deliveries', body, { 'idempotency-key': 'replica-key-1' });
    expect(first.status).toBe(201);
    expect(again).toEqual(first);
    const racing = await Promise.all([
      call(stack.gateway, 'POST', '/v1/deliveries', body, { 'idempotency-key': 'replica-key-2' }),
      call(b, 'POST', '/v1/deliveries', body, { 'idempotency-key': 'replica-key-2' }),
    ]);
    // Either both carry the one delivery, or one is told the other is still in flight; never two deliveries.
    const created = racing.filter((r) => r.status === 201);
    expect(created.length).toBeGreaterThanOrEqual(1);
    expect(new Set(created.map((r) => r.body.id)).size).toBe(1);
    for (const r of racing.filter((x) => x.status !== 201)) {
      expect(r).toMatchObject({ status: 409, body: { code: 'IDEMPOTENCY_IN_FLIGHT' } });
    }
    expect(Number(await count())).toBe(before + 2);
  });

  it("wakes the request waiting on replica B with the ack only replica A's session received", async () => {
    const vin = stack.seeds.vehicles[7]?.vin ?? '';
    const { id, location } = await readyDelivery(vin);
    dropAcksAtB = true;
    try {
      const unlocked = await call(b, 'POST', `/v1/deliveries/${id}/unlock`, unlockBody(location));
      expect(unlocked.status).toBe(200);
      const [command] = await commandsOf(id, 'unlock');
      expect(command?.status).toBe('executed');
      // Replica A recorded it for B: the only way B could have heard of it.
      const relayed = await stack.gateway.store.db
        .selectFrom('ack_inbox' as never)
        .select(['command_id' as never])
        .where('command_id' as never, '=', command?.id as never)
        .execute();
      expect(relayed).toHaveLength(1);
      expect((await call(b, 'POST', `/v1/deliveries/${id}/lock`, { driverId: DRIVER_ID })).status).toBe(200);
      expect((await call(b, 'GET', `/v1/deliveries/${id}`)).body.status).toBe('completed');
    } finally {
      dropAcksAtB = false;
    }
  });

  it("wakes a state query asked on replica B with the answer only replica A's session received", async () => {
    const vin = stack.seeds.vehicles[8]?.vin ?? '';
    const vehicle = await linkSeeded(stack, vin);
    const { id: locationId } = await registerSeededLocation(stack, vehicle.ownerId);
    const now = Date.now();
    const scheduled = await call(stack.gateway, 'POST', '/v1/deliveries', {
      vin,
      locationId,
      driverId: DRIVER_ID,
      packageIds: [PACKAGE_ID],
      window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
    });
    expect(scheduled.status).toBe(201);
    const before = await stack.gateway.store.db
      .selectFrom('report_inbox' as never)
      .select(['nonce' as never])
      .execute();
    dropStateAtB = true;
    try {
      // The parking confirmation is the car's answer to B's state query (PROTOCOL.md §3.5).
      const parked = await call(b, 'POST', `/v1/deliveries/${scheduled.body.id}/parking`);
      expect(parked.status, JSON.stringify(parked.body)).toBe(200);
    } finally {
      dropStateAtB = false;
    }
    const after = await stack.gateway.store.db
      .selectFrom('report_inbox' as never)
      .select(['nonce' as never])
      .execute();
    expect(after.length).toBe(before.length + 1);
  });

  it('counts an API key once across replicas: its per-minute budget is shared', async () => {
    const key = await stack.gateway.createApiKey('shared budget');
    const statuses: number[] = [];
    for (let i = 0; i < PER_KEY_PER_MIN; i++) {
      const gateway = i % 2 === 0 ? stack.gateway : b;
      statuses.push((await call(gateway, 'GET', '/v1/vehicles', undefined, {}, key)).status);
      // A window boundary in the middle would reset the count: start again in the next one.
      if (statuses.at(-1) === 429) break;
    }
    const over = await call(b, 'GET', '/v1/vehicles', undefined, {}, key);
    const overA = await call(stack.gateway, 'GET', '/v1/vehicles', undefined, {}, key);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(over).toMatchObject({ status: 429, body: { code: 'RATE_LIMITED' } });
    expect(overA.status).toBe(429);
  });

  it('hands a background job to another replica within its lease once the holder is killed -9', async () => {
    const env = (replica: string) => ({
      NODE_ENV: 'test',
      HTTP_PORT: '0',
      DATA_DIR: join(stack.dir, `data-${replica}`),
      CERTS_DIR: stack.pki.dir,
      MQTT_URL: mosquitto.url,
      DATABASE_URL: databaseUrl,
      GATEWAY_REPLICA: replica,
      API_KEY: stack.apiKey,
      WATCHDOG_INTERVAL_S: '1',
      JOB_LEASE_S: '2',
    });
    const holderOf = async (job: string) => {
      const row = await stack.gateway.store.db
        .selectFrom('leases' as never)
        .select(['holder' as never])
        .where('name' as never, '=', job as never)
        .executeTakeFirst();
      return (row as { holder?: string } | undefined)?.holder ?? null;
    };
    const c = await startChildGateway(env('r3'));
    children.push(c);
    await expect.poll(() => holderOf('job:watchdog'), { timeout: 10_000 }).toMatch(/^r3\//);
    const d = await startChildGateway(env('r4'));
    children.push(d);
    // While r3 renews, r4's ticks skip the job.
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(await holderOf('job:watchdog')).toMatch(/^r3\//);
    }
    const killedAt = Date.now();
    await c.kill9();
    await expect.poll(() => holderOf('job:watchdog'), { timeout: 15_000, interval: 100 }).toMatch(/^r4\//);
    // The lease (2 s) runs out, then r4's next tick (1 s) takes it; the margin is for a loaded machine.
    expect(Date.now() - killedAt).toBeLessThan(12_000);
  });
});

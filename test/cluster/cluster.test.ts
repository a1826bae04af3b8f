// The whole local cluster (npm run test:cluster): 3 replicas as processes on one PostgreSQL schema, the 3-node
// nats-server cluster, the simulated fleet and the round-robin entry point. Deliveries spread over every replica; one
// replica is killed -9 in the middle of an unlock; the broker node every replica and car is connected to is stopped
// while deliveries are in flight, and they move to the other two. Then the invariants, read from the store, the cars
// and the webhook receiver: no delivery unlocked twice, no car open past its relock bound, every delivery ended or
// explained, the ones begun after the node stopped completed, no acknowledged record lost, the audit log verifies,
// and every webhook delivered or pending.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect } from 'kysely';
import type { IClientOptions } from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, startCluster } from '../../cluster/cluster.ts';
import { holdTtlMs } from '../../gateway/cluster/replica.ts';
import type { Database } from '../../gateway/store/schema.ts';
import { EVENT_TYPES } from '../../gateway/webhooks/events.ts';
import { loadSeeds } from '../../seeds/index.ts';
import { carControl } from '../helpers/cars.ts';
import { DRIVER_ID, PACKAGE_ID } from '../helpers/delivery.ts';
import { freshPgSchema, pgUrlWithSchema } from '../helpers/pg-schema.ts';
import { type Receiver, startReceiver } from '../helpers/receiver.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RELOCK_AFTER_S = 4;
const TIMINGS = {
  COMMAND_TIMEOUT_MS: 2_000,
  QUERY_TIMEOUT_MS: 1_000,
  RECONCILE_INTERVAL_MS: 1_000,
  WATCHDOG_INTERVAL_S: 1,
};
/**
 * The longest a car may stay open: the relock time, or, when the replica that opened it died, the time its hold
 * takes to expire before another replica settles the unlock and the watchdog relocks; plus a tick of each job and a
 * margin for a loaded machine.
 */
const OPEN_BOUND_MS =
  RELOCK_AFTER_S * 1000 +
  holdTtlMs(TIMINGS) +
  TIMINGS.RECONCILE_INTERVAL_MS +
  TIMINGS.WATCHDOG_INTERVAL_S * 1000 +
  5_000;

const seeds = loadSeeds();
const control = carControl();
/** The broker port of every connection each car made, in order: which node it was on, and where it moved. */
const carPorts = new Map<string, number[]>();
/**
 * Whether a client asks again: the reply says the car did not act, and the refusal is one that passes (the broker
 * link is back; the car's state answer, which a node's stop held up, arrives), gateway/errors.ts.
 */
const askAgain = (reply: Reply): boolean =>
  reply.body?.mayHaveSucceeded === false &&
  (reply.body?.retryable === true || reply.body?.code === 'PARKING_NOT_CONFIRMED');
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let cluster: Cluster;
let receiver: Receiver;
let dir: string;
let dropSchema: () => Promise<void>;
let databaseUrl: string;
let db: Kysely<Database>;

/** Open intervals seen on each car, sampled from the cars themselves. */
const openSince = new Map<string, number>();
const openFor: Array<{ vin: string; ms: number }> = [];
let sampler: NodeJS.Timeout | null = null;

beforeAll(async () => {
  const schema = await freshPgSchema();
  dropSchema = schema.drop;
  databaseUrl = pgUrlWithSchema(schema.schema);
  dir = mkdtempSync(join(tmpdir(), 'curbside-cluster-test-'));
  receiver = await startReceiver();
  cluster = await startCluster({
    dir,
    databaseUrl,
    replicas: 3,
    env: {
      COMMAND_TIMEOUT_MS: String(TIMINGS.COMMAND_TIMEOUT_MS),
      QUERY_TIMEOUT_MS: String(TIMINGS.QUERY_TIMEOUT_MS),
      RECONCILE_INTERVAL_MS: String(TIMINGS.RECONCILE_INTERVAL_MS),
      WATCHDOG_INTERVAL_S: String(TIMINGS.WATCHDOG_INTERVAL_S),
      RELOCK_AFTER_S: String(RELOCK_AFTER_S),
      JOB_LEASE_S: '2',
      AUDIT_CHECKPOINT_S: '2',
      WEBHOOK_ALLOW_PRIVATE: '127.0.0.1/32',
    },
    // The cars' own fail-safe is far off: the gateway's watchdog must be what relocks them.
    fleet: {
      createClient: (url: string, options: IClientOptions) => {
        const client = control.createClient(url, options);
        const vin = String(options.clientId);
        client.on('connect', () => {
          const port = (client.stream as TLSSocket).remotePort;
          if (port !== undefined) carPorts.set(vin, [...(carPorts.get(vin) ?? []), port]);
        });
        return client;
      },
      failsafeRelockMs: 600_000,
    },
  });
  db = new Kysely<Database>({
    dialect: new PostgresDialect({
      pool: new pg.Pool({
        connectionString: databaseUrl,
        max: 2,
        types: {
          getTypeParser: ((oid: number, f?: 'text') =>
            oid === 20 ? Number : pg.types.getTypeParser(oid, f)) as typeof pg.types.getTypeParser,
        },
      }),
    }),
  });
  sampler = setInterval(() => {
    const t = Date.now();
    for (const [vin, car] of cluster.fleet?.cars ?? []) {
      const open = !car.car.snapshot().locked;
      const since = openSince.get(vin);
      if (open && since === undefined) openSince.set(vin, t);
      if (!open && since !== undefined) {
        openFor.push({ vin, ms: t - since });
        openSince.delete(vin);
      }
    }
  }, 100);
});

afterAll(async () => {
  if (sampler) clearInterval(sampler);
  await db?.destroy();
  await cluster?.stop();
  await receiver?.close();
  await dropSchema?.();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: replies are read by shape and asserted on.
  body: any;
}

async function call(base: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${cluster.apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
const viaBalancer = (method: 'GET' | 'POST', path: string, body?: unknown) =>
  call(cluster.balancer.url, method, path, body);

const unlockBody = (location: { lat: number; lon: number }) => ({
  driverId: DRIVER_ID,
  position: { lat: location.lat + 0.0003, lon: location.lon },
  packageId: PACKAGE_ID,
});

describe('a local cluster of three replicas on a 3-node broker cluster', () => {
  it('keeps every invariant through a replica killed -9 in the middle of an unlock and the broker node everyone is on stopped with deliveries in flight', async () => {
    const fleet = cluster.fleet;
    if (!fleet) throw new Error('the cluster runs a fleet');
    const vehicles = seeds.vehicles.filter((v) => fleet.cars.has(v.vin));
    // Every 2xx the client got, to find in the store afterwards.
    const acknowledged = {
      scheduled: new Set<string>(),
      unlocked: new Set<string>(),
      locked: new Set<string>(),
    };

    for (const ownerId of new Set(vehicles.map((v) => v.ownerId))) {
      const hook = await viaBalancer('POST', '/v1/webhooks', {
        url: `${receiver.url}/hook`,
        events: [...EVENT_TYPES],
        ownerId,
      });
      expect(hook.status, JSON.stringify(hook.body)).toBe(201);
    }
    const deliveries: Array<{ id: string; vin: string; location: { lat: number; lon: number } }> = [];
    for (const v of vehicles) {
      const linked = await viaBalancer('POST', '/v1/vehicles', {
        vin: v.vin,
        make: v.make,
        model: v.model,
        year: v.year,
        provider: v.provider,
        ownerId: v.ownerId,
        consent: ['unlock', 'lock'],
      });
      expect(linked.status, JSON.stringify(linked.body)).toBe(201);
      const location = seeds.locations.find((l) => l.ownerId === v.ownerId);
      if (!location) throw new Error(`no location for ${v.ownerId}`);
      const loc = await viaBalancer('POST', '/v1/locations', {
        ownerId: location.ownerId,
        label: location.label,
        kind: location.kind,
        lat: location.lat,
        lon: location.lon,
        radiusM: 200,
        access: 'public',
      });
      expect(loc.status).toBe(201);
      const now = Date.now();
      const scheduled = await viaBalancer('POST', '/v1/deliveries', {
        vin: v.vin,
        locationId: loc.body.id,
        driverId: DRIVER_ID,
        packageIds: [PACKAGE_ID],
        window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
      });
      expect(scheduled.status).toBe(201);
      acknowledged.scheduled.add(scheduled.body.id);
      expect((await viaBalancer('POST', `/v1/deliveries/${scheduled.body.id}/parking`)).status).toBe(200);
      deliveries.push({ id: scheduled.body.id, vin: v.vin, location });
    }

    // The victim: its unlock goes to r2, whose car has opened but whose ack is held back while r2 is killed.
    const [victim, ...others] = deliveries;
    if (!victim) throw new Error('no delivery');
    const r2 = cluster.replicas[1];
    if (!r2) throw new Error('no r2');
    control.acks(victim.vin, 'hold');
    const orphaned = call(
      r2.url,
      'POST',
      `/v1/deliveries/${victim.id}/unlock`,
      unlockBody(victim.location),
    ).then(
      (reply) => ({ answered: reply }),
      (err: unknown) => ({ lost: String(err) }),
    );
    await expect.poll(() => control.held(victim.vin), { timeout: 10_000 }).toBeGreaterThan(0);
    await r2.kill9();
    control.acks(victim.vin, 'pass');
    control.release(victim.vin);
    // The client of the killed replica got no answer: what it asked for is settled by the others.
    expect(await orphaned).toHaveProperty('lost');

    // The rest through the entry point, which skips the dead replica: one half at once, and while their unlocks are
    // in flight the broker node every replica and car is on (the first URL) stops; then the other half.
    const broker = cluster.broker;
    if (!broker.stopNode || !broker.startNode || !broker.nodes)
      throw new Error('the cluster runs a clustered broker');
    const firstPort = Number(new URL(broker.urls[0] as string).port);
    for (const vin of fleet.cars.keys()) expect(carPorts.get(vin)?.at(-1), vin).toBe(firstPort);
    const during = others.slice(0, Math.ceil(others.length / 2));
    const after = others.slice(during.length);
    /** Unlock, then lock, each asked again on a refusal that did nothing, as a client would; the last answers. */
    const drive = async (
      d: (typeof deliveries)[number],
    ): Promise<{ unlock: number; lock?: number; code?: string }> => {
      const ask = async (action: 'unlock' | 'lock'): Promise<Reply> => {
        for (let attempt = 1; ; attempt++) {
          const body = action === 'unlock' ? unlockBody(d.location) : { driverId: DRIVER_ID };
          const reply = await viaBalancer('POST', `/v1/deliveries/${d.id}/${action}`, body);
          if (reply.status === 200 || !askAgain(reply) || attempt === 40) return reply;
          await pause(250);
        }
      };
      const unlocked = await ask('unlock');
      if (unlocked.status !== 200) return { unlock: unlocked.status, code: unlocked.body?.code };
      acknowledged.unlocked.add(d.id);
      const locked = await ask('lock');
      if (locked.status !== 200) return { unlock: 200, lock: locked.status, code: locked.body?.code };
      acknowledged.locked.add(d.id);
      return { unlock: 200, lock: 200 };
    };
    const inFlight = Promise.all(during.map(drive));
    // In flight: the first of them has reached its car.
    await expect
      .poll(() => during.some((d) => fleet.car(d.vin).executed.some((c) => c.deliveryId === d.id)), {
        timeout: 30_000,
        interval: 20,
      })
      .toBe(true);
    await broker.stopNode(0);
    const duringRuns = await inFlight;
    // Every car moved to another node: mqtt.js takes the next URL on each reconnect.
    const survivingPorts = broker.urls.slice(1).map((u) => Number(new URL(u).port));
    await expect
      .poll(() => [...fleet.cars.values()].filter((c) => !c.connection.connected).length, { timeout: 60_000 })
      .toBe(0);
    for (const vin of fleet.cars.keys()) expect(survivingPorts, vin).toContain(carPorts.get(vin)?.at(-1));
    // And every replica: each says it is ready again, its broker link up (gateway/platform/readiness.ts).
    for (const r of cluster.replicas.filter((x) => x.alive())) {
      await expect
        .poll(async () => (await fetch(`${r.url}/readyz`)).status, { timeout: 60_000, interval: 250 })
        .toBe(200);
    }
    // Begun after the node stopped, on the two left: every one completes.
    const afterRuns = await Promise.all(after.map(drive));
    for (const [i, run] of afterRuns.entries()) expect(run, after[i]?.id).toEqual({ unlock: 200, lock: 200 });
    // The node comes back and serves MQTT again; nobody needs it.
    await broker.startNode(0);

    // Requests went to every replica (r2 before it died).
    const answered = cluster.balancer.answered();
    for (const r of cluster.replicas) expect(answered.get(r.url) ?? 0, r.name).toBeGreaterThan(0);

    // The victim's unlock is settled by a surviving replica once r2's hold expires, and its car relocked.
    await expect
      .poll(
        async () =>
          (await db.selectFrom('deliveries').select('status').where('id', '=', victim.id).executeTakeFirst())
            ?.status,
        { timeout: OPEN_BOUND_MS + 10_000, interval: 250 },
      )
      .toMatch(/^(relocked|completed)$/);
    await expect.poll(() => fleet.car(victim.vin).car.snapshot().locked, { timeout: 5_000 }).toBe(true);

    // No delivery unlocked twice: in the store, and at the cars.
    const executedUnlocks = await db
      .selectFrom('commands')
      .select(['delivery_id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('action', '=', 'unlock')
      .where('status', '=', 'executed')
      .groupBy('delivery_id')
      .execute();
    for (const row of executedUnlocks) expect(Number(row.n), row.delivery_id).toBe(1);
    const unlockedAtCar = (d: (typeof deliveries)[number]) =>
      fleet.car(d.vin).executed.filter((c) => c.deliveryId === d.id && c.action === 'unlock');
    for (const d of deliveries) expect(unlockedAtCar(d).length, d.id).toBeLessThanOrEqual(1);
    // Each one the client was told is unlocked (and the victim's) is, once, in the store and at the car.
    const executedIds = new Set(executedUnlocks.map((r) => r.delivery_id));
    for (const d of deliveries.filter((x) => x === victim || acknowledged.unlocked.has(x.id))) {
      expect(executedIds.has(d.id), d.id).toBe(true);
      expect(unlockedAtCar(d), d.id).toHaveLength(1);
    }

    // No car left open past its bound; every car locked now.
    for (const [vin, since] of openSince) openFor.push({ vin, ms: Date.now() - since });
    for (const o of openFor) expect(o.ms, o.vin).toBeLessThanOrEqual(OPEN_BOUND_MS);
    for (const [vin, car] of fleet.cars) expect(car.car.snapshot().locked, vin).toBe(true);

    // Every delivery ended: completed; or relocked, for the victim and for one whose lock the node's stop cut off;
    // or, for one in flight when the node stopped, still scheduled with nothing unlocked and its refusal's code.
    const finished = await db.selectFrom('deliveries').select(['id', 'status']).execute();
    for (const d of finished) {
      const i = during.findIndex((x) => x.id === d.id);
      const run = duringRuns[i];
      if (d.id === victim.id) expect(['relocked', 'completed']).toContain(d.status);
      else if (run === undefined) expect(d.status, d.id).toBe('completed');
      else if (run.unlock === 200 && run.lock === 200) expect(d.status, d.id).toBe('completed');
      else {
        expect(run.code, d.id).toEqual(expect.any(String));
        expect(['completed', 'relocked', 'scheduled'], `${d.id} ${JSON.stringify(run)}`).toContain(d.status);
        if (d.status === 'scheduled')
          expect(unlockedAtCar(during[i] as (typeof deliveries)[number])).toEqual([]);
      }
    }
    const victimView = await viaBalancer('GET', `/v1/deliveries/${victim.id}`);
    const kinds = (victimView.body.timeline as Array<{ kind: string }>).map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(['unlock_granted', 'command_interrupted']));

    // No acknowledged record lost.
    const ids = new Set(finished.map((d) => d.id));
    for (const id of acknowledged.scheduled) expect(ids.has(id), id).toBe(true);
    for (const id of acknowledged.locked) expect(finished.find((d) => d.id === id)?.status).toBe('completed');

    // The audit log that three replicas wrote verifies.
    const env = {
      ...process.env,
      DATABASE_URL: databaseUrl,
      CERTS_DIR: cluster.pki.dir,
      DATA_DIR: join(dir, 'audit'),
    };
    const bundle = join(dir, 'audit-bundle.json');
    const exported = spawnSync(process.execPath, ['--import', 'tsx', 'audit/main.ts', 'export', bundle], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
    });
    expect(exported.status, exported.stderr).toBe(0);
    const verified = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'audit/main.ts',
        'verify',
        bundle,
        '--key',
        join(cluster.pki.dir, 'audit-checkpoint.pub'),
      ],
      { cwd: ROOT, env, encoding: 'utf8' },
    );
    expect(verified.status, verified.stderr).toBe(0);

    // Webhooks: every event delivered, none given up; each one the receiver got, with its id.
    await expect
      .poll(
        async () =>
          (await db.selectFrom('webhook_outbox').select('id').where('status', '=', 'pending').execute())
            .length,
        { timeout: 30_000, interval: 250 },
      )
      .toBe(0);
    const outbox = await db.selectFrom('webhook_outbox').select(['event_id', 'status']).execute();
    expect(outbox.filter((r) => r.status !== 'delivered')).toEqual([]);
    const received = new Set(receiver.received.map((r) => (JSON.parse(r.body) as { id: string }).id));
    for (const row of outbox) expect(received.has(row.event_id), row.event_id).toBe(true);
    expect(outbox.length).toBeGreaterThan(deliveries.length * 3);

    // Nothing went wrong in the surviving replicas' logs at error level.
    for (const r of cluster.replicas.filter((x) => x.alive())) {
      expect(
        r.problems().filter((line) => /"level":(50|60)/.test(line)),
        r.name,
      ).toEqual([]);
    }
  });
});

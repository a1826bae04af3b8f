// Signed webhooks end to end: subscriptions per owner and per carrier, a real receiver on loopback, retries, the
// refusal of internal addresses (SSRF), and the metrics the dispatcher moves.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../gateway/platform/metrics.ts';
import type { Resolve } from '../gateway/webhooks/sender.ts';
import { outboxOf } from '../gateway/webhooks/store.ts';
import { verifySignature } from '../gateway/webhooks/verify.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import {
  type Call,
  callerWith,
  callWithKey,
  deliveryBody,
  link,
  locationAt,
  unlockBody,
  vehicleOf,
} from './helpers/platform.ts';
import { parsePrometheus } from './helpers/prometheus.ts';
import { type Receiver, type ReceiverOptions, startReceiver } from './helpers/receiver.ts';
import { type Stack, startStack } from './helpers/stack.ts';

let stack: Stack;
let admin: Call;
const receivers: Receiver[] = [];

const fast = {
  pollMs: 50,
  baseDelayMs: 20,
  maxDelayMs: 80,
  maxAttempts: 4,
  timeoutMs: 2_000,
  leaseMs: 5_000,
};

/** The gateway's DNS in this file: a table, so that no test asks a real resolver about anything. */
const dns = new Map<string, string[]>();
const resolve: Resolve = async (name) => {
  const found = dns.get(name);
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  return found.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
};

beforeAll(async () => {
  // The receivers listen on 127.0.0.1: the operator's allowlist lets webhooks reach it, and nothing else private.
  stack = await startStack(
    { WEBHOOK_ALLOW_PRIVATE: '127.0.0.1/32' },
    { gateway: { webhooks: { policy: fast, resolve } } },
  );
  admin = callWithKey(stack, stack.apiKey);
});

afterAll(async () => {
  await stack?.close();
  await Promise.all(receivers.map((r) => r.close()));
});

async function receiver(options?: ReceiverOptions): Promise<Receiver> {
  const r = await startReceiver(options);
  receivers.push(r);
  return r;
}

const typesOf = (r: Receiver, status = 204): string[] =>
  r.received
    .filter((x) => x.status === status)
    .map((x) => JSON.parse(x.body).type)
    .sort();

async function subscribe(call: Call, url: string, events: string[], extra: Record<string, unknown> = {}) {
  const r = await call('POST', '/v1/webhooks', { url, events, ...extra });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body as { id: string; secret: string };
}

describe('webhook subscriptions', () => {
  it('shows the signing secret once and stores it sealed', async () => {
    const owner = await callerWith(stack, ['customer'], { ownerId: 'owner-fay' });
    const r = await owner('POST', '/v1/webhooks', {
      url: 'https://example.test/hook',
      events: ['vehicle.unlocked'],
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ ownerId: 'owner-fay', carrierId: null, events: ['vehicle.unlocked'] });
    expect(r.body.secret).toMatch(/^whsec_/);
    const listed = await owner('GET', '/v1/webhooks');
    expect(listed.body.webhooks).toHaveLength(1);
    expect(JSON.stringify(listed.body)).not.toContain(r.body.secret);
    const row = await stack.gateway.store.db
      .selectFrom('webhooks')
      .selectAll()
      .where('id', '=', r.body.id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(r.body.secret);
  });

  it('replays a retried creation with the same secret, kept sealed in the idempotency record', async () => {
    const owner = await callerWith(stack, ['customer'], { ownerId: 'owner-fay' });
    const body = { url: 'https://example.test/idem', events: ['delivery.completed'] };
    const headers = { 'idempotency-key': 'create-hook-1' };
    const first = await owner('POST', '/v1/webhooks', body, headers);
    const again = await owner('POST', '/v1/webhooks', body, headers);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual(first.body);
    const rows = await stack.gateway.store.db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('idem_key', '=', 'create-hook-1')
      .execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]?.response_sealed).toBe(1);
    expect(JSON.stringify(rows)).not.toContain(first.body.secret);
    // Another key using the same Idempotency-Key gets its own webhook, not the first one's secret.
    const other = await callerWith(stack, ['customer'], { ownerId: 'owner-fay' });
    const theirs = await other('POST', '/v1/webhooks', body, headers);
    expect(theirs.body.id).not.toBe(first.body.id);
  });

  it('takes the subscriber from the key binding; only unbound keys name one, exactly one', async () => {
    const owner = await callerWith(stack, ['customer'], { ownerId: 'owner-fay' });
    const url = 'https://example.test/hook';
    const named = await owner('POST', '/v1/webhooks', { url, events: ['vehicle.unlocked'], carrierId: 'x' });
    expect(named.status).toBe(400);
    expect(named.body.code).toBe('FIELD_NOT_ALLOWED');
    const otherOwner = await owner('POST', '/v1/webhooks', {
      url,
      events: ['vehicle.unlocked'],
      ownerId: 'owner-ben',
    });
    expect(otherOwner.status).toBe(404);
    expect((await admin('POST', '/v1/webhooks', { url, events: ['vehicle.unlocked'] })).body.code).toBe(
      'VALIDATION_FAILED',
    );
    const both = await admin('POST', '/v1/webhooks', {
      url,
      events: ['vehicle.unlocked'],
      ownerId: 'a',
      carrierId: 'b',
    });
    expect(both.status).toBe(400);
    expect(
      (await admin('POST', '/v1/webhooks', { url, events: ['vehicle.unlocked'], carrierId: 'c' })).status,
    ).toBe(201);
  });

  it('refuses other schemes, unknown or repeated events, and unknown fields', async () => {
    const owner = await callerWith(stack, ['customer'], { ownerId: 'owner-fay' });
    for (const body of [
      { url: 'ftp://example.test/x', events: ['vehicle.unlocked'] },
      { url: 'https://example.test/x', events: ['vehicle.exploded'] },
      { url: 'https://example.test/x', events: ['vehicle.unlocked', 'vehicle.unlocked'] },
      { url: 'https://example.test/x', events: [] },
      { url: 'https://example.test/x', events: ['vehicle.unlocked'], secret: 'mine' },
    ]) {
      const r = await owner('POST', '/v1/webhooks', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.code).toBe('VALIDATION_FAILED');
    }
  });

  it("hides another owner's webhook (404) and stops sending once deleted", async () => {
    const fay = await callerWith(stack, ['customer'], { ownerId: 'owner-fay' });
    const ben = await callerWith(stack, ['customer'], { ownerId: 'owner-ben' });
    const w = await subscribe(fay, 'https://example.test/del', ['vehicle.unlocked']);
    expect((await ben('DELETE', `/v1/webhooks/${w.id}`)).status).toBe(404);
    expect((await fay('DELETE', `/v1/webhooks/${w.id}`)).status).toBe(204);
    expect((await fay('DELETE', `/v1/webhooks/${w.id}`)).status).toBe(404);
    expect((await fay('GET', '/v1/webhooks')).body.webhooks.map((x: { id: string }) => x.id)).not.toContain(
      w.id,
    );
  });
});

describe('events of a whole delivery', () => {
  let vehicle: SeedVehicle;

  it('reach the owner and the carrier that subscribed, signed, and nobody else', async () => {
    vehicle = vehicleOf(stack, 'owner-ada');
    const customer = await callerWith(stack, ['customer'], { ownerId: 'owner-ada' });
    const carrier = await callerWith(stack, ['carrier'], { carrierId: 'carrier-acme' });
    const driver = await callerWith(stack, ['driver'], { carrierId: 'carrier-acme' });
    const otherCustomer = await callerWith(stack, ['customer'], { ownerId: 'owner-ben' });
    const otherCarrier = await callerWith(stack, ['carrier'], { carrierId: 'carrier-zed' });

    const [ownerHook, carrierHook, otherOwnerHook, otherCarrierHook] = await Promise.all([
      receiver(),
      receiver(),
      receiver(),
      receiver(),
    ]);
    const all = [
      'delivery.scheduled',
      'vehicle.unlocked',
      'delivery.completed',
      'access.denied',
      'vehicle.lock_unconfirmed',
    ];
    const ownerSub = await subscribe(customer, ownerHook.url, all);
    const carrierSub = await subscribe(carrier, carrierHook.url, [
      'delivery.scheduled',
      'delivery.completed',
    ]);
    await subscribe(otherCustomer, otherOwnerHook.url, all);
    await subscribe(otherCarrier, otherCarrierHook.url, all);

    await link(customer, vehicle);
    const loc = await locationAt(customer, vehicle);
    const d = await carrier('POST', '/v1/deliveries', deliveryBody(vehicle, loc));
    expect(d.status).toBe(201);
    expect(d.body.carrierId).toBe('carrier-acme');
    // The owner's backend confirms the car is parked there (PROTOCOL.md §3.5) before any unlock.
    expect((await customer('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
    const denied = await driver(
      'POST',
      `/v1/deliveries/${d.body.id}/unlock`,
      unlockBody(vehicle, { driverId: 'x' }),
    );
    expect(denied.body.code).toBe('DRIVER_NOT_ASSIGNED');
    expect((await driver('POST', `/v1/deliveries/${d.body.id}/unlock`, unlockBody(vehicle))).status).toBe(
      200,
    );
    expect((await driver('POST', `/v1/deliveries/${d.body.id}/lock`, { driverId: 'driver-7' })).status).toBe(
      200,
    );

    await expect
      .poll(() => typesOf(ownerHook), { timeout: 5_000 })
      .toEqual(['access.denied', 'delivery.completed', 'delivery.scheduled', 'vehicle.unlocked']);
    await expect
      .poll(() => typesOf(carrierHook), { timeout: 5_000 })
      .toEqual(['delivery.completed', 'delivery.scheduled']);
    for (const [hook, secret] of [
      [ownerHook, ownerSub.secret],
      [carrierHook, carrierSub.secret],
    ] as const) {
      for (const got of hook.received) {
        expect(
          verifySignature(secret, got.headers['curbside-signature'], got.body, Date.now(), 300),
        ).toMatchObject({
          ok: true,
        });
        const event = JSON.parse(got.body);
        expect(got.headers['curbside-event-id']).toBe(event.id);
        expect(got.headers['curbside-event-type']).toBe(event.type);
        expect(event).toMatchObject({ deliveryId: d.body.id, vin: vehicle.vin, ownerId: 'owner-ada' });
        expect(Date.parse(event.createdAt)).toBeGreaterThan(0);
      }
    }
    // The same event goes to both with one id; each receiver can de-duplicate on it.
    const scheduled = (h: Receiver) =>
      h.received.map((x) => JSON.parse(x.body)).find((e) => e.type === 'delivery.scheduled');
    expect(scheduled(ownerHook).id).toBe(scheduled(carrierHook).id);
    const deniedEvent = ownerHook.received
      .map((x) => JSON.parse(x.body))
      .find((e) => e.type === 'access.denied');
    expect(deniedEvent.data).toMatchObject({ code: 'DRIVER_NOT_ASSIGNED', request: 'unlock_requested' });
    // Another owner's or another carrier's receiver hears nothing of this delivery.
    await new Promise((r) => setTimeout(r, 150));
    expect(otherOwnerHook.received).toEqual([]);
    expect(otherCarrierHook.received).toEqual([]);
  });
});

describe('delivery from the outbox', () => {
  it('retries with backoff until the receiver answers 2xx, with the same event id', async () => {
    const hook = await receiver();
    hook.respond = ({ n }) => (n < 2 ? 503 : 204);
    const v = vehicleOf(stack, 'owner-dara');
    const customer = await callerWith(stack, ['customer'], { ownerId: 'owner-dara' });
    await subscribe(customer, hook.url, ['delivery.scheduled']);
    await link(customer, v);
    const loc = await locationAt(customer, v);
    expect((await admin('POST', '/v1/deliveries', deliveryBody(v, loc))).status).toBe(201);
    await expect.poll(() => hook.received.map((x) => x.status), { timeout: 5_000 }).toEqual([503, 503, 204]);
    const ids = new Set(hook.received.map((x) => x.headers['curbside-event-id']));
    expect(ids.size).toBe(1);
    const eventId = [...ids][0] as string;
    await expect
      .poll(async () => (await outboxOf(stack.gateway.store.db, eventId)).map((r) => r.status), {
        timeout: 5_000,
      })
      .toEqual(['delivered']);
    const [row] = await outboxOf(stack.gateway.store.db, eventId);
    expect(row).toMatchObject({ status: 'delivered', attempts: 3, lastError: null });
    // Every attempt is signed afresh and verifies.
    const sub = hook.received[2];
    expect(sub?.headers['curbside-signature']).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
  });

  it('gives up after the last attempt and keeps the row as dead', async () => {
    const hook = await receiver();
    hook.respond = () => 500;
    const v = vehicleOf(stack, 'owner-eli');
    const customer = await callerWith(stack, ['customer'], { ownerId: 'owner-eli' });
    await subscribe(customer, hook.url, ['delivery.scheduled']);
    await link(customer, v);
    const loc = await locationAt(customer, v);
    expect((await admin('POST', '/v1/deliveries', deliveryBody(v, loc))).status).toBe(201);
    await expect.poll(() => hook.received.length, { timeout: 5_000 }).toBe(fast.maxAttempts);
    const eventId = hook.received[0]?.headers['curbside-event-id'] as string;
    await expect
      .poll(async () => (await outboxOf(stack.gateway.store.db, eventId))[0]?.status, { timeout: 2_000 })
      .toBe('dead');
    const [row] = await outboxOf(stack.gateway.store.db, eventId);
    expect(row).toMatchObject({ attempts: fast.maxAttempts, lastError: 'HTTP 500' });
    await new Promise((r) => setTimeout(r, 200));
    expect(hook.received).toHaveLength(fast.maxAttempts);
  });
});

describe('webhook URLs that reach internal addresses (SSRF)', () => {
  const countRows = async (table: 'webhooks' | 'webhook_outbox') =>
    Number(
      (
        await stack.gateway.store.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  it('are refused at registration (422 WEBHOOK_URL_FORBIDDEN) for customer and carrier keys, and nothing is written', async () => {
    // Loopback but not on this stack's allowlist (127.0.0.1/32), in every spelling: a receiver there must never hear
    // anything.
    const internal = await receiver({ host: '127.0.0.2' });
    const customer = await callerWith(stack, ['customer'], { ownerId: 'owner-chen' });
    const carrier = await callerWith(stack, ['carrier'], { carrierId: 'carrier-chen' });
    const urls: Array<[string, RegExp]> = [
      ['http://169.254.169.254/latest/meta-data', /link-local/],
      ['http://[::ffff:169.254.169.254]/latest/meta-data', /link-local/],
      ['http://[::ffff:a9fe:a9fe]/', /link-local/],
      ['http://2130706434/', /127\.0\.0\.2 is loopback/],
      ['http://0177.0.0.2/', /127\.0\.0\.2 is loopback/],
      ['http://0x7f.0.0.2/', /127\.0\.0\.2 is loopback/],
      ['http://127.2/', /127\.0\.0\.2 is loopback/],
      ['http://0.0.0.0/', /this network/],
      ['http://[::]/', /unspecified/],
      ['http://[::1]/', /loopback/],
      ['http://localhost/', /loopback/],
      ['http://10.0.0.1/', /private/],
      ['http://172.16.0.1/', /private/],
      ['http://192.168.0.10/', /private/],
      ['http://100.64.0.1/', /carrier-grade NAT/],
      ['http://[fd00::1]/', /unique local/],
      ['http://[fe80::1]/', /link-local/],
      ['http://224.0.0.1/', /multicast/],
      ['http://255.255.255.255/', /broadcast/],
      [internal.url, /127\.0\.0\.2 is loopback/],
    ];
    const rowsBefore = await countRows('webhooks');
    for (const call of [customer, carrier]) {
      for (const [url, why] of urls) {
        const r = await call('POST', '/v1/webhooks', { url, events: ['delivery.scheduled'] });
        expect(r.status, url).toBe(422);
        expect(r.body, url).toMatchObject({
          code: 'WEBHOOK_URL_FORBIDDEN',
          retryable: false,
          resolution: 'FIX_REQUEST',
          detail: expect.stringMatching(why),
        });
      }
    }
    expect(await countRows('webhooks')).toBe(rowsBefore);
    expect((await customer('GET', '/v1/webhooks')).body.webhooks).toEqual([]);
    expect((await carrier('GET', '/v1/webhooks')).body.webhooks).toEqual([]);
    // An event of that owner and carrier then goes nowhere: no outbox row, no request.
    const v = vehicleOf(stack, 'owner-chen');
    await link(customer, v);
    const loc = await locationAt(customer, v);
    const outboxBefore = await countRows('webhook_outbox');
    expect((await carrier('POST', '/v1/deliveries', deliveryBody(v, loc))).status).toBe(201);
    expect(await countRows('webhook_outbox')).toBe(outboxBefore);
    await new Promise((r) => setTimeout(r, 150));
    expect(internal.arrived).toBe(0);
  });

  it('are refused at delivery time, after resolution, and each attempt fails with the reason, logged without the secret', async () => {
    const internal = await receiver({ host: '127.0.0.2' });
    const loopback = await receiver();
    // A name that resolves to an address off the allowlist (DNS can change after registration).
    dns.set('hooks.chen.example.test', ['127.0.0.2']);
    const customer = await callerWith(stack, ['customer'], { ownerId: 'owner-chen' });
    const byName = await subscribe(customer, `http://hooks.chen.example.test:${internal.port}/hooks`, [
      'delivery.scheduled',
    ]);
    // Rows stored before these rules existed: an internal address, and localhost (loopback, and ::1 is not allowed).
    // Registered with an allowed URL, then changed in the store underneath the API.
    const stored = [`http://127.0.0.2:${internal.port}/hooks`, `http://localhost:${loopback.port}/hooks`];
    const ids: string[] = [];
    for (const url of stored) {
      const { id } = await subscribe(customer, loopback.url, ['delivery.scheduled']);
      await stack.gateway.store.db.updateTable('webhooks').set({ url }).where('id', '=', id).execute();
      ids.push(id);
    }
    const v = vehicleOf(stack, 'owner-chen');
    const loc = await locationAt(customer, v);
    expect((await admin('POST', '/v1/deliveries', deliveryBody(v, loc))).status).toBe(201);
    const rowsOf = () =>
      stack.gateway.store.db
        .selectFrom('webhook_outbox')
        .select(['webhook_id', 'status', 'attempts', 'last_error'])
        .where('webhook_id', 'in', [byName.id, ...ids])
        .orderBy('webhook_id')
        .execute();
    // Every attempt fails (refused), until the last one: nothing was ever sent.
    await expect
      .poll(async () => (await rowsOf()).map((r) => [r.status, r.attempts]), { timeout: 5_000 })
      .toEqual([byName.id, ...ids].map(() => ['dead', fast.maxAttempts]));
    const rows = await rowsOf();
    const errorOf = (id: string) => rows.find((r) => r.webhook_id === id)?.last_error;
    expect(errorOf(byName.id)).toMatch(
      /^refused: hooks\.chen\.example\.test resolved to 127\.0\.0\.2 is loopback/,
    );
    expect(errorOf(ids[0] as string)).toMatch(/^refused: 127\.0\.0\.2 is loopback/);
    expect(errorOf(ids[1] as string)).toMatch(/^refused: localhost means ::1 is loopback/);
    expect(internal.arrived).toBe(0);
    expect(loopback.arrived).toBe(0);
    const refusals = stack.logs.filter((l) => l.code === 'WEBHOOK_URL_FORBIDDEN');
    expect(refusals.map((l) => l.webhookId)).toEqual(expect.arrayContaining([byName.id, ...ids]));
    expect(refusals[0]).toMatchObject({
      event: 'webhook.attempt',
      error: expect.stringMatching(/^refused: /),
    });
    expect(JSON.stringify(stack.logs)).not.toContain(byName.secret);
  });
});

describe('metrics of the outbox', () => {
  it('count failed attempts and the deliveries waiting, as /metrics shows them', async () => {
    const scrape = async () => {
      const r = await stack.gateway.app.inject({ method: 'GET', url: '/metrics' });
      expect(r.statusCode).toBe(200);
      return parsePrometheus(r.body);
    };
    const hook = await receiver();
    let release: (status: number) => void = () => undefined;
    const held = new Promise<number>((r) => {
      release = r;
    });
    // The first attempt fails; the second is held open, so its row waits while /metrics is read.
    hook.respond = ({ n }) => (n === 0 ? 503 : held);
    const customer = await callerWith(stack, ['customer'], { ownerId: 'owner-fay' });
    const carrier = await callerWith(stack, ['carrier'], { carrierId: 'carrier-metrics' });
    await subscribe(carrier, hook.url, ['delivery.scheduled']);
    const v = vehicleOf(stack, 'owner-fay');
    await link(customer, v);
    const loc = await locationAt(customer, v);
    const before = await scrape();
    expect((await carrier('POST', '/v1/deliveries', deliveryBody(v, loc))).status).toBe(201);
    await expect.poll(() => hook.arrived, { timeout: 5_000 }).toBe(2);
    const waiting = await scrape();
    const delta = (after: typeof before, name: string) => after.value(name) - before.value(name);
    expect(delta(waiting, METRIC_NAMES.webhookFailures)).toBe(1);
    expect(delta(waiting, METRIC_NAMES.webhookOutboxDepth)).toBe(1);
    release(204);
    await expect
      .poll(async () => delta(await scrape(), METRIC_NAMES.webhookOutboxDepth), { timeout: 5_000 })
      .toBe(0);
    expect(delta(await scrape(), METRIC_NAMES.webhookFailures)).toBe(1);
  });
});

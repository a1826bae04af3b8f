// A notification written to the outbox survives a gateway restart: stop before delivery, restart on the same data.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureDevPki } from '../certs/index.ts';
import { parseGrant } from '../gateway/access/api-keys.ts';
import { type Gateway, startGateway } from '../gateway/gateway.ts';
import { parseConfig } from '../gateway/platform/config.ts';
import { createLogger } from '../gateway/platform/logger.ts';
import { loadGatewayMaterial } from '../gateway/platform/material.ts';
import { outboxOf } from '../gateway/webhooks/store.ts';
import { verifySignature } from '../gateway/webhooks/verify.ts';
import { loadSeeds } from '../seeds/index.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

let dir: string;
let store: ScratchStore;
let hook: Receiver;
const seeds = loadSeeds();
/** Every log line of both lives, at the most verbose level, to check that no secret reaches a log. */
const logLines: string[] = [];
const logger = createLogger({
  level: 'trace',
  destination: { write: (line: string) => void logLines.push(line) },
});
const fast = { pollMs: 50, baseDelayMs: 20, maxDelayMs: 40, timeoutMs: 2_000, leaseMs: 5_000 };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'curbside-restart-'));
  store = await scratchStore(join(dir, 'data'));
  hook = await startReceiver();
});

afterAll(async () => {
  await hook?.close();
  await store?.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function boot(now?: () => number): Promise<Gateway> {
  const pki = await ensureDevPki({ dir: join(dir, 'pki'), vins: seeds.vehicles.map((x) => x.vin) });
  return startGateway({
    config: parseConfig({
      NODE_ENV: 'test',
      HTTP_PORT: '0',
      MQTT_PORT: '0',
      ...store.env,
      LOG_LEVEL: 'silent',
      // The receiver listens on loopback: only the operator's allowlist lets a webhook reach it.
      WEBHOOK_ALLOW_PRIVATE: '127.0.0.1/32',
    }),
    material: await loadGatewayMaterial(pki),
    catalog: seeds.catalog,
    logger,
    webhooks: { policy: { ...fast, baseDelayMs: 3_600_000, maxDelayMs: 3_600_000 } },
    ...(now ? { now } : {}),
  });
}

it('delivers after a restart what was enqueued before the stop', async () => {
  const v = seeds.vehicles.find((x) => x.ownerId === 'owner-ada') as (typeof seeds.vehicles)[number];
  // First life: the receiver is down (503), then the gateway stops with the event still pending.
  hook.respond = () => 503;
  const first = await boot();
  const key = await first.createApiKey('restart', parseGrant({ scopes: ['admin'] }));
  const call = (method: 'POST', url: string, body: unknown) =>
    first.app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, payload: body as object });
  const sub = JSON.parse(
    (
      await call('POST', '/v1/webhooks', {
        url: hook.url,
        events: ['delivery.scheduled'],
        ownerId: v.ownerId,
      })
    ).body,
  );
  expect(sub.secret).toMatch(/^whsec_/);
  await call('POST', '/v1/vehicles', {
    vin: v.vin,
    make: v.make,
    model: v.model,
    year: v.year,
    provider: v.provider,
    ownerId: v.ownerId,
    consent: ['unlock', 'lock'],
  });
  const loc = JSON.parse(
    (
      await call('POST', '/v1/locations', {
        ownerId: v.ownerId,
        label: 'x',
        lat: 47.61,
        lon: -122.33,
        access: 'public',
      })
    ).body,
  );
  const t = Date.now();
  const scheduled = await call('POST', '/v1/deliveries', {
    vin: v.vin,
    locationId: loc.id,
    driverId: 'd',
    packageIds: ['p'],
    window: { start: new Date(t).toISOString(), end: new Date(t + 3_600_000).toISOString() },
    carrierId: 'carrier-acme',
  });
  expect(scheduled.statusCode).toBe(201);
  const deliveryId = JSON.parse(scheduled.body).id;
  // The first life's attempt (503, the retry an hour away) is made and logged before the stop, which would
  // otherwise abort it in flight and hand the row back unlogged.
  await expect
    .poll(() => logLines.some((l) => l.includes('webhook.attempt') && l.includes('"outcome":"retry"')), {
      timeout: 5_000,
    })
    .toBe(true);
  await first.close();
  expect(hook.received.filter((r) => r.status === 204)).toEqual([]);
  // Between lives the store holds the event, not yet delivered.
  const between = await store.open();
  const rows = await between.db.selectFrom('webhook_outbox').select(['status', 'payload']).execute();
  await between.close();
  expect(rows.map((r) => [r.status, JSON.parse(r.payload).deliveryId])).toEqual([['pending', deliveryId]]);

  // Second life on the same data directory, the receiver back up, the clock past the scheduled retry.
  hook.respond = () => 204;
  const second = await boot(() => Date.now() + 2 * 3_600_000);
  try {
    await expect.poll(() => hook.received.filter((r) => r.status === 204).length, { timeout: 5_000 }).toBe(1);
    const got = hook.received.find((r) => r.status === 204);
    const event = JSON.parse(got?.body ?? '{}');
    expect(event).toMatchObject({ type: 'delivery.scheduled', deliveryId, vin: v.vin });
    // Signed with the secret from the first life: it was sealed in the store, and opened again after restart.
    expect(
      verifySignature(
        sub.secret,
        got?.headers['curbside-signature'],
        got?.body ?? '',
        Date.now() + 2 * 3_600_000,
        300,
      ).ok,
    ).toBe(true);
    // The receiver records before it answers; the row settles right after the answer.
    await expect
      .poll(async () => (await outboxOf(second.store.db, event.id)).map((r) => r.status), { timeout: 5_000 })
      .toEqual(['delivered']);
    // The failed attempts of the first life were logged, the secret and the API key never were.
    expect(logLines.some((l) => l.includes('webhook.attempt'))).toBe(true);
    expect(logLines.join('\n')).not.toContain(sub.secret);
    expect(logLines.join('\n')).not.toContain(key);
  } finally {
    await second.close();
  }
});

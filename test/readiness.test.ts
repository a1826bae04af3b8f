// Readiness: /readyz is 200 only with a writable store, a connected MQTT link and a signing key; else 503 naming what is missing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureDevPki } from '../certs/index.ts';
import { type Broker, createBroker } from '../gateway/broker/broker.ts';
import { type Gateway, startGateway } from '../gateway/gateway.ts';
import { parseConfig } from '../gateway/platform/config.ts';
import { type GatewayMaterial, loadGatewayMaterial } from '../gateway/platform/material.ts';
import { createReadiness } from '../gateway/platform/readiness.ts';
import { DEFAULT_BACKOFF, reconnectDelay } from '../gateway/vehicles/reconnect.ts';
import { loadSeeds } from '../seeds/index.ts';
import { freePort } from './helpers/child-gateway.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

const silent = pino({ level: 'silent' });

describe('readiness checks', () => {
  it('reports every check by name, and fails on a throw or a check that does not answer', async () => {
    const check = createReadiness(
      {
        fine: () => null,
        broken: async () => {
          throw new Error('disk full');
        },
        stuck: () => new Promise<null>(() => undefined),
        refused: () => 'no session',
      },
      50,
    );
    expect(await check()).toEqual({
      ready: false,
      checks: { fine: 'ok', broken: 'disk full', stuck: 'no answer within 50 ms', refused: 'no session' },
      missing: ['broken', 'stuck', 'refused'],
    });
    expect(await createReadiness({ a: () => null })()).toEqual({
      ready: true,
      checks: { a: 'ok' },
      missing: [],
    });
  });
});

describe('/readyz against a broker the test starts and stops', () => {
  let dir: string;
  let material: GatewayMaterial;
  let broker: Broker | null;
  let gateway: Gateway;
  let port: number;
  let store: ScratchStore;

  const startBroker = (at: number) =>
    createBroker({
      tls: { ca: material.ca, cert: material.brokerCert, key: material.brokerKey, crl: material.crl },
      host: '127.0.0.1',
      port: at,
      logger: silent,
    });
  const readyz = async () => {
    // No API key: orchestrators probe without one.
    const r = await gateway.app.inject({ method: 'GET', url: '/readyz' });
    return { status: r.statusCode, body: JSON.parse(r.body) };
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'curbside-ready-'));
    material = await loadGatewayMaterial(await ensureDevPki({ dir: join(dir, 'pki'), vins: [] }));
    broker = await startBroker(0);
    port = broker.port;
    store = await scratchStore(join(dir, 'data'));
    gateway = await startGateway({
      config: parseConfig({
        NODE_ENV: 'test',
        HTTP_PORT: '0',
        MQTT_URL: `mqtts://127.0.0.1:${port}`,
        ...store.env,
      }),
      material,
      catalog: loadSeeds().catalog,
      logger: silent,
    });
  });

  afterEach(async () => {
    await gateway?.close();
    await broker?.close();
    await store?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is ready with store, MQTT link and signing key', async () => {
    expect(await readyz()).toEqual({
      status: 200,
      body: { status: 'ready', checks: { store: 'ok', mqtt: 'ok', signingKey: 'ok', shutdown: 'ok' } },
    });
    expect((await gateway.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });

  it('goes 503 while the broker is down, then 200 again once it is back', async () => {
    await broker?.close();
    broker = null;
    await expect.poll(async () => (await readyz()).status, { timeout: 10_000 }).toBe(503);
    const down = await readyz();
    expect(down.body).toMatchObject({
      code: 'NOT_READY',
      retryable: true,
      missing: ['mqtt'],
      // The URL and the setting it came from; what the last attempt met may follow.
      checks: {
        store: 'ok',
        mqtt: expect.stringMatching(
          new RegExp(`^no MQTT session with mqtts://127\\.0\\.0\\.1:${port} \\(MQTT_URL\\)(: .+)?$`),
        ),
        signingKey: 'ok',
      },
    });
    expect(down.body.detail).toContain('mqtt');
    // Liveness is not readiness: the process itself is fine.
    expect((await gateway.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);

    broker = await startBroker(port);
    await expect.poll(async () => (await readyz()).status, { timeout: 15_000 }).toBe(200);
  });

  it('goes 503 naming the store when it cannot be written', async () => {
    await gateway.store.db.destroy();
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.missing).toEqual(['store']);
    expect(r.body.checks.mqtt).toBe('ok');
  });
});

describe('an external broker (MQTT_URL) that is not up when the gateway starts', () => {
  let dir: string;
  let broker: Broker | null = null;
  let gateway: Gateway | null = null;
  let store: ScratchStore | null = null;

  afterEach(async () => {
    await gateway?.close();
    await broker?.close();
    await store?.drop();
    gateway = null;
    broker = null;
    store = null;
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts not ready naming MQTT_URL, keeps trying, and is ready once the broker answers', async () => {
    dir = mkdtempSync(join(tmpdir(), 'curbside-ready-'));
    const material = await loadGatewayMaterial(await ensureDevPki({ dir: join(dir, 'pki'), vins: [] }));
    const port = await freePort();
    const url = `mqtts://127.0.0.1:${port}`;
    store = await scratchStore(join(dir, 'data'));
    // Nothing listens on the port: before, the start failed with "connect ECONNREFUSED".
    const started = await startGateway({
      config: parseConfig({ NODE_ENV: 'test', HTTP_PORT: '0', MQTT_URL: url, ...store.env }),
      material,
      catalog: loadSeeds().catalog,
      logger: silent,
    });
    gateway = started;
    const readyz = async () => {
      const r = await started.app.inject({ method: 'GET', url: '/readyz' });
      return { status: r.statusCode, body: JSON.parse(r.body) };
    };
    const down = await readyz();
    expect(down.status).toBe(503);
    expect(down.body.missing).toEqual(['mqtt']);
    expect(down.body.checks.mqtt).toMatch(new RegExp(`^no MQTT session with ${url} \\(MQTT_URL\\)`));
    expect(down.body.detail).toContain('MQTT_URL');
    // The refusal the attempts met is named too, once one has failed.
    await expect
      .poll(async () => (await readyz()).body.checks.mqtt, { timeout: 10_000 })
      .toMatch(/ECONNREFUSED/);
    expect((await started.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);

    broker = await createBroker({
      tls: { ca: material.ca, cert: material.brokerCert, key: material.brokerKey, crl: material.crl },
      host: '127.0.0.1',
      port,
      logger: silent,
    });
    await expect.poll(async () => (await readyz()).status, { timeout: 45_000, interval: 200 }).toBe(200);
    expect(started.link.connected()).toBe(true);
  }, 60_000);
});

describe("the MQTT link's reconnect backoff", () => {
  it('starts at 0.5 s, doubles to a 30 s cap, and jitters each step between half and all of it', () => {
    const steps = Array.from({ length: 12 }, (_, attempt) => attempt);
    const low = steps.map((a) => reconnectDelay(a, DEFAULT_BACKOFF, () => 0));
    const high = steps.map((a) => reconnectDelay(a, DEFAULT_BACKOFF, () => 0.999_999));
    expect(DEFAULT_BACKOFF).toEqual({ initialMs: 500, maxMs: 30_000 });
    expect(high.slice(0, 8)).toEqual([500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
    expect(low.slice(0, 3)).toEqual([250, 500, 1_000]);
    for (const [i, ms] of high.entries()) expect(ms).toBeGreaterThanOrEqual(low[i] as number);
    expect(
      Math.max(
        ...high,
        reconnectDelay(10_000, DEFAULT_BACKOFF, () => 0.999_999),
      ),
    ).toBe(30_000);
  });
});

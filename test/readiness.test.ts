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
import { loadSeeds } from '../seeds/index.ts';

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
    gateway = await startGateway({
      config: parseConfig({
        NODE_ENV: 'test',
        HTTP_PORT: '0',
        MQTT_URL: `mqtts://127.0.0.1:${port}`,
        DATA_DIR: join(dir, 'data'),
      }),
      material,
      catalog: loadSeeds().catalog,
      logger: silent,
    });
  });

  afterEach(async () => {
    await gateway?.close();
    await broker?.close();
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
      checks: { store: 'ok', mqtt: `no MQTT session with mqtts://127.0.0.1:${port}`, signingKey: 'ok' },
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

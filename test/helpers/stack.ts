// Test harness: a whole system on loopback (dev PKI in a temp dir, gateway, embedded broker, simulated fleet).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AedesPublishPacket } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { type DevPkiPaths, ensureDevPki } from '../../certs/index.ts';
import { parseConfig } from '../../gateway/config.ts';
import { type Gateway, type GatewayDeps, startGateway } from '../../gateway/gateway.ts';
import { loadGatewayMaterial } from '../../gateway/material.ts';
import { TrustedKeysFileSchema } from '../../protocols/index.ts';
import { loadSeeds, type Seeds } from '../../seeds/index.ts';
import { type Fleet, startFleet } from '../../simulator/index.ts';

export interface Stack {
  dir: string;
  seeds: Seeds;
  pki: DevPkiPaths;
  gateway: Gateway;
  fleet: Fleet;
  apiKey: string;
  /** Every PUBLISH the broker routed, by topic, as the broker saw it. */
  published: AedesPublishPacket[];
  // biome-ignore lint/suspicious/noExplicitAny: tests read replies by shape and assert on them.
  request(method: 'GET' | 'POST', url: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** An MQTT client with some identity's certificate (raw options passed to mqtt.js). */
  connectAs(
    clientId: string,
    tls: { cert: string; key: string; ca?: string },
    extra?: mqtt.IClientOptions,
  ): Promise<MqttClient>;
  close(): Promise<void>;
}

export const read = (path: string): string => readFileSync(path, 'utf8');

/** Extra gateway dependencies a test may set (webhook timings, idempotency retention, the clock). */
export type StackOptions = Pick<GatewayDeps, 'webhooks' | 'idempotency' | 'now'>;

export async function startStack(
  env: Record<string, string> = {},
  options: StackOptions = {},
): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'curbside-test-'));
  const seeds = loadSeeds();
  const pki = await ensureDevPki({ dir: join(dir, 'pki'), vins: seeds.vehicles.map((v) => v.vin) });
  const config = parseConfig({
    NODE_ENV: 'test',
    HTTP_PORT: '0',
    MQTT_PORT: '0',
    DATA_DIR: join(dir, 'data'),
    LOG_LEVEL: 'silent',
    COMMAND_TIMEOUT_MS: '3000',
    ...env,
  });
  const logger = pino({ level: 'silent' });
  const gateway = await startGateway({
    config,
    material: await loadGatewayMaterial(pki),
    catalog: seeds.catalog,
    logger,
    ...options,
  });
  const published: AedesPublishPacket[] = [];
  gateway.broker?.aedes.on('publish', (packet, client) => {
    if (client) published.push(packet);
  });
  const fleet = await startFleet({
    brokerUrl: gateway.brokerUrl,
    vehicles: seeds.vehicles,
    pki: {
      ca: read(pki.caCert),
      certFor: (vin) => ({ cert: read(pki.vehicleCert(vin)), key: read(pki.vehicleKey(vin)) }),
    },
    trustedKeys: TrustedKeysFileSchema.parse(JSON.parse(read(pki.trustedKeys))),
    dataDir: join(dir, 'sim'),
    reportIntervalMs: 60_000,
  });
  const apiKey = await gateway.createApiKey('test');
  const clients: MqttClient[] = [];

  return {
    dir,
    seeds,
    pki,
    gateway,
    fleet,
    apiKey,
    published,
    async request(method, url, body) {
      const res = await gateway.app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${apiKey}` },
        ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
      });
      return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : null };
    },
    async connectAs(clientId, tls, extra = {}) {
      const client = await mqtt.connectAsync(gateway.brokerUrl, {
        clientId,
        protocolVersion: 4,
        ca: tls.ca ?? read(pki.caCert),
        cert: tls.cert,
        key: tls.key,
        rejectUnauthorized: true,
        reconnectPeriod: 0,
        connectTimeout: 3_000,
        ...extra,
      });
      clients.push(client);
      return client;
    },
    async close() {
      await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
      await fleet.stop();
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

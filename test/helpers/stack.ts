// Test harness: a whole system on loopback (dev PKI in a temp dir, gateway, embedded broker, simulated fleet).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AedesPublishPacket } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import pino, { type Logger } from 'pino';
import { type DevPkiPaths, ensureDevPki } from '../../certs/index.ts';
import type { DomainEvent } from '../../gateway/deliveries/notifications.ts';
import { type Gateway, type GatewayDeps, startGateway } from '../../gateway/gateway.ts';
import { type Config, parseConfig } from '../../gateway/platform/config.ts';
import { type GatewayMaterial, loadGatewayMaterial } from '../../gateway/platform/material.ts';
import { type StoreConfig, storeConfigOf } from '../../gateway/store/store.ts';
import { brokerTarget, stateTopic } from '../../protocols/index.ts';
import { loadSeeds, type Seeds } from '../../seeds/index.ts';
import {
  type ControlServer,
  createFleetFaults,
  type Fleet,
  readFleetPki,
  type StartFleetDeps,
  startControlServer,
  startFleet,
} from '../../simulator/index.ts';
import type { Logger as CarLogger, ClientFactory } from '../../simulator/transport.ts';
import { freshPgSchema, pgUrlWithSchema } from './pg-schema.ts';
import { type Dialect, testDialect } from './temp-store.ts';

export interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read replies by shape and assert on them.
  body: any;
}

export interface Stack {
  dir: string;
  seeds: Seeds;
  pki: DevPkiPaths;
  gateway: Gateway;
  fleet: Fleet;
  /** The gateway's store: its dialect, and where it is (to open it again once the gateway is closed). */
  dialect: Dialect;
  storeConfig: StoreConfig;
  /** The gateway's DATABASE_URL (its schema in search_path) on PostgreSQL, null on SQLite. */
  databaseUrl: string | null;
  /** The simulator's control API, when the stack was started with `simulatorControl`. */
  control: ControlServer | null;
  apiKey: string;
  /** Every PUBLISH the broker routed, by topic, as the broker saw it. */
  published: AedesPublishPacket[];
  /** Every domain event the gateway emitted (a recording Notify), in order. */
  events: DomainEvent[];
  /** Event types whose Notify throws, to show the decision is rolled back with its event. */
  failNotify: Set<DomainEvent['type']>;
  /** Every delivery id passed to the onDeliveryRevoked hook, in order. */
  revoked: string[];
  /** The gateway's log lines at warn and above, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Moves the relock watchdog's clock (only the watchdog's: tokens keep real time, as the cars do). */
  advanceWatchdog(ms: number): void;
  /** Stops the gateway and starts a new one on the same store and broker port; the cars reconnect. */
  restartGateway(): Promise<void>;
  request(method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<Reply>;
  /** An MQTT client with some identity's certificate (raw options passed to mqtt.js). */
  connectAs(
    clientId: string,
    tls: { cert: string; key: string; ca?: string },
    extra?: mqtt.IClientOptions,
  ): Promise<MqttClient>;
  close(): Promise<void>;
}

export const read = (path: string): string => readFileSync(path, 'utf8');

export interface ExternalBroker {
  url: string;
  close(): Promise<void>;
}

export interface StackOptions {
  /** The gateway's logger; silent unless given. */
  logger?: Logger;
  /** Builds the simulated cars' MQTT clients (see helpers/cars.ts). */
  createClient?: ClientFactory;
  /** The simulated cars' logger; silent unless given. */
  carLogger?: CarLogger;
  /** Runs a broker on the stack's PKI and points the gateway at it (MQTT_URL): the embedded one stays off. */
  externalBroker?: (pki: DevPkiPaths, dir: string) => Promise<ExternalBroker>;
  /**
   * How the simulated fleet runs (fault injection, fail-safe time, backoff…, and which cars: the seed fleet
   * unless given); the plain fleet by default.
   */
  fleet?: Pick<StartFleetDeps, 'backoff' | 'faults' | 'failsafeRelockMs' | 'tickIntervalMs'> &
    Partial<Pick<StartFleetDeps, 'vehicles'>>;
  /** Extra gateway dependencies a test may set (webhook timings, idempotency retention, the clock). */
  gateway?: Pick<GatewayDeps, 'webhooks' | 'idempotency' | 'now' | 'console'>;
  /**
   * The store: a SQLite file in the stack's folder, or a fresh PostgreSQL schema (DATABASE_URL). Default: the
   * run's (testDialect: the vitest project's STORE_DIALECT, else sqlite).
   */
  dialect?: Dialect;
  /**
   * Runs the simulator's control API (with fault injection) and gives the gateway its URL, as npm start does, so
   * that the console can drive the cars.
   */
  simulatorControl?: boolean;
}

export async function startStack(
  env: Record<string, string> = {},
  options: StackOptions = {},
): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'curbside-test-'));
  const seeds = loadSeeds();
  const pki = await ensureDevPki({ dir: join(dir, 'pki'), vins: seeds.vehicles.map((v) => v.vin) });
  const external = options.externalBroker ? await options.externalBroker(pki, join(dir, 'broker')) : null;
  const dialect = options.dialect ?? testDialect();
  const pgSchema = dialect === 'postgres' ? await freshPgSchema() : null;
  const faults =
    options.fleet?.faults ?? (options.simulatorControl ? createFleetFaults({ seed: 1 }) : undefined);
  // Listens before the gateway starts, so that the gateway is given its URL; serves the cars once they are up.
  const control = options.simulatorControl
    ? await startControlServer({ faults: faults ?? null, port: 0 })
    : null;
  const config = parseConfig({
    NODE_ENV: 'test',
    HTTP_PORT: '0',
    MQTT_PORT: '0',
    DATA_DIR: join(dir, 'data'),
    LOG_LEVEL: 'silent',
    COMMAND_TIMEOUT_MS: '3000',
    // Tests sweep the relock watchdog themselves (stack.gateway.watchdog.sweep()).
    WATCHDOG_INTERVAL_S: '3600',
    ...(external ? { MQTT_URL: external.url } : {}),
    ...(pgSchema ? { DATABASE_URL: pgUrlWithSchema(pgSchema.schema) } : {}),
    ...(control ? { SIMULATOR_CONTROL_URL: `http://127.0.0.1:${control.port}` } : {}),
    ...env,
  });
  const logs: Array<Record<string, unknown>> = [];
  const logger =
    options.logger ?? pino({ level: 'warn' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const events: DomainEvent[] = [];
  const failNotify = new Set<DomainEvent['type']>();
  const revoked: string[] = [];
  const published: AedesPublishPacket[] = [];
  let watchdogOffset = 0;
  const material = await loadGatewayMaterial(pki);
  const boot = async (c: Config, m: GatewayMaterial): Promise<Gateway> => {
    const g = await startGateway({
      config: c,
      material: m,
      catalog: seeds.catalog,
      logger,
      notify: async (_db, event) => {
        if (failNotify.has(event.type)) throw new Error(`notify refused ${event.type}`);
        events.push(event);
      },
      onDeliveryRevoked: (id) => {
        revoked.push(id);
      },
      watchdog: { now: () => Date.now() + watchdogOffset },
      ...options.gateway,
    });
    g.broker?.aedes.on('publish', (packet, client) => {
      if (client) published.push(packet);
    });
    return g;
  };
  let gateway: Gateway;
  try {
    gateway = await boot(config, material);
  } catch (err) {
    await control?.close();
    await external?.close();
    await pgSchema?.drop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const fleet = await startFleet({
    brokerUrl: gateway.brokerUrl,
    vehicles: seeds.vehicles,
    ...readFleetPki(pki.dir),
    dataDir: join(dir, 'sim'),
    reportIntervalMs: 60_000,
    ...(options.createClient ? { createClient: options.createClient } : {}),
    ...(options.carLogger ? { logger: options.carLogger } : {}),
    ...options.fleet,
    ...(faults ? { faults } : {}),
  });
  control?.attach(fleet);
  const apiKey = await gateway.createApiKey('test');
  const clients: MqttClient[] = [];

  const stack: Stack = {
    dir,
    seeds,
    pki,
    gateway,
    fleet,
    dialect,
    storeConfig: pgSchema ? pgSchema.config : storeConfigOf(config),
    databaseUrl: config.DATABASE_URL ?? null,
    control,
    apiKey,
    published,
    events,
    failNotify,
    revoked,
    logs,
    advanceWatchdog(ms) {
      watchdogOffset += ms;
    },
    async restartGateway() {
      const port = String(gateway.broker?.port);
      await gateway.close();
      const from = published.length;
      gateway = await boot({ ...config, MQTT_PORT: Number(port) }, material);
      stack.gateway = gateway;
      // A car reports its state only once it has subscribed again: wait for every car's first report.
      const missing = () => {
        const reported = new Set(published.slice(from).map((p) => p.topic));
        return [...fleet.cars.keys()].filter((vin) => !reported.has(stateTopic(vin)));
      };
      // Generous: on a busy machine (and a busy shared PostgreSQL) thirteen reconnects and their reports take time.
      const deadline = Date.now() + 60_000;
      while (missing().length > 0) {
        if (Date.now() > deadline)
          throw new Error(
            `the fleet did not come back after the restart: no report from ${missing().join(', ')}`,
          );
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
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
      // A cluster's URLs: the first node, as the gateway and cars start on it.
      const client = await mqtt.connectAsync(brokerTarget(gateway.brokerUrl).url, {
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
      await control?.close();
      await fleet.stop();
      await gateway.close();
      await external?.close();
      await pgSchema?.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return stack;
}

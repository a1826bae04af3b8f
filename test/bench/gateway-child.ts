// Owns the bench's gateway process: one gateway (embedded broker or an external one; SQLite or PostgreSQL) in
// its own process, so its memory and CPU figures are its own; the parent drives it over IPC (see ipc.ts).
import { devPkiPaths } from '../../certs/dev-pki.ts';
import { type Gateway, startGateway } from '../../gateway/gateway.ts';
import { parseConfig } from '../../gateway/platform/config.ts';
import { createLogger } from '../../gateway/platform/logger.ts';
import { loadGatewayMaterial } from '../../gateway/platform/material.ts';
import { loadSeeds } from '../../seeds/index.ts';
import { BENCH_LOCATION, BENCH_OWNER, BENCH_VEHICLE } from './fleet-data.ts';
import { idleMemory, serve } from './ipc.ts';
import { profileStart, profileStop } from './profiler.ts';

export interface GatewayStartParams {
  pkiDir: string;
  dataDir: string;
  /** An external broker; the embedded one when absent. */
  mqttUrl?: string;
  /** The PostgreSQL store; SQLite in dataDir when absent. */
  databaseUrl?: string;
  /** Its connections (DATABASE_POOL_SIZE). */
  pgPool?: number;
  logLevel: string;
}

export interface GatewayStarted {
  baseUrl: string;
  brokerUrl: string;
  apiKey: string;
}

export interface ScheduleParams {
  locationId: string;
  /** [vin, driverId, packageId] per delivery. */
  deliveries: Array<[string, string, string]>;
  windowMs: number;
}

const CHUNK = 256;

async function inChunks<T, R>(items: readonly T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += CHUNK) {
    out.push(...(await Promise.all(items.slice(i, i + CHUNK).map(work))));
  }
  return out;
}

let gateway: Gateway | null = null;

const running = (): Gateway => {
  if (!gateway) throw new Error('gateway not started');
  return gateway;
};

serve({
  async start(params: GatewayStartParams): Promise<GatewayStarted> {
    const config = parseConfig({
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      HTTP_PORT: '0',
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: '0',
      MQTT_URL: params.mqttUrl,
      DATA_DIR: params.dataDir,
      DATABASE_URL: params.databaseUrl,
      DATABASE_POOL_SIZE: params.pgPool === undefined ? undefined : String(params.pgPool),
      CERTS_DIR: params.pkiDir,
      LOG_LEVEL: params.logLevel,
      SIMULATOR: 'off',
      DEMO: 'off',
      // One admin key drives every courier, and each car gets one unlock per cycle: the production
      // defaults (600 requests a minute per key, 12 unlocks a minute per car) would refuse the load itself.
      RATE_LIMIT_PER_KEY_PER_MIN: '100000',
      VEHICLE_COMMAND_BURST: '100',
      VEHICLE_COMMANDS_PER_MIN: '600',
    });
    const logger = createLogger({ level: config.LOG_LEVEL, destination: process.stdout });
    gateway = await startGateway({
      config,
      material: await loadGatewayMaterial(devPkiPaths(params.pkiDir)),
      catalog: loadSeeds().catalog,
      logger,
    });
    const baseUrl = await gateway.app.listen({ host: config.HOST, port: 0 });
    return { baseUrl, brokerUrl: gateway.brokerUrl, apiKey: await gateway.createApiKey('bench') };
  },

  /** Links the cars through the vehicle service (catalog checks apply) and registers the delivery location. */
  async link(params: { vins: string[] }): Promise<{ locationId: string }> {
    const g = running();
    await inChunks(params.vins, (vin) =>
      g.vehicles.link({ vin, ...BENCH_VEHICLE, ownerId: BENCH_OWNER, consent: ['unlock', 'lock'] }),
    );
    const location = await g.vehicles.addLocation({
      ownerId: BENCH_OWNER,
      label: 'Bench lot',
      kind: 'workplace',
      // Only a place a driver may walk up to is accepted as a delivery location.
      access: 'public',
      ...BENCH_LOCATION,
    });
    return { locationId: location.id };
  },

  /**
   * Schedules deliveries through the delivery service and confirms each one's parking (what
   * POST /v1/deliveries/{id}/parking does: the gateway asks the car where it is and whether its ignition is
   * off), since no unlock is granted before that; ids come back in the order asked.
   */
  async schedule(params: ScheduleParams): Promise<string[]> {
    const g = running();
    const start = Date.now() - 60_000;
    const made = await inChunks(params.deliveries, async ([vin, driverId, packageId]) => {
      const d = await g.deliveries.schedule({
        vin,
        locationId: params.locationId,
        driverId,
        packageIds: [packageId],
        window: { start, end: start + params.windowMs },
      });
      await g.deliveries.confirmParking(d.id);
      return d;
    });
    return made.map((d) => d.id);
  },

  async memory(): Promise<{ memory: NodeJS.MemoryUsage; clients: number | null }> {
    const memory = await idleMemory();
    return { memory, clients: gateway?.broker?.connectedClients() ?? null };
  },

  clients: (): number | null => gateway?.broker?.connectedClients() ?? null,

  cpu: (): NodeJS.CpuUsage => process.cpuUsage(),

  profileStart,
  profileStop,
});

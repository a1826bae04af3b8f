// Owns assembling one gateway replica: store, optional embedded broker, MQTT link, services and HTTP app.
import { createPrivateKey, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Catalog } from '../protocols/index.ts';
import { type Broker, createBroker } from './broker/broker.ts';
import type { Config } from './config.ts';
import { type ControlService, createControlService, type OnDeliveryRevoked } from './control.ts';
import { createDeliveryService, type DeliveryService } from './deliveries.ts';
import { buildApp } from './http/app.ts';
import { hashApiKey } from './http/auth.ts';
import type { Notify } from './notifications.ts';
import { insertApiKey, providerOf } from './store/records.ts';
import { openStore, type Store } from './store/store.ts';
import { connectVehicleLink, type VehicleLink } from './vehicle-link.ts';
import { createVehicleService, type VehicleService } from './vehicles.ts';
import { createRelockWatchdog, type Every, type RelockWatchdog } from './watchdog.ts';

export interface GatewayMaterial {
  ca: string;
  brokerCert: string;
  brokerKey: string;
  gatewayCert: string;
  gatewayKey: string;
  /** PKCS#8 PEM of the Ed25519 token-signing key. */
  tokenSigningKey: string;
  tokenKid: string;
  crl?: string;
}

export interface GatewayDeps {
  config: Config;
  material: GatewayMaterial;
  catalog: Catalog;
  logger: Logger;
  now?: () => number;
  newId?: () => string;
  /** Receives every domain event, in the transaction of its decision; events go nowhere by default. */
  notify?: Notify;
  /** Called when a delivery's access is revoked for good, after its car was relocked; see control.ts. */
  onDeliveryRevoked?: OnDeliveryRevoked;
  /** The relock watchdog's clock and timer (default: `now` and setInterval), so tests need not wait. */
  watchdog?: { now?: () => number; every?: Every };
}

export interface Gateway {
  app: FastifyInstance;
  store: Store;
  broker: Broker | null;
  /** The broker URL cars should use (embedded or external). */
  brokerUrl: string;
  link: VehicleLink;
  vehicles: VehicleService;
  deliveries: DeliveryService;
  control: ControlService;
  watchdog: RelockWatchdog;
  /** Creates an API key, stores only its hash, and returns the key once. */
  createApiKey(label: string): Promise<string>;
  close(): Promise<void>;
}

const defaultId = (): string => randomUUID().replaceAll('-', '');

export async function startGateway(deps: GatewayDeps): Promise<Gateway> {
  const { config, material, logger } = deps;
  const now = deps.now ?? Date.now;
  const newId = deps.newId ?? defaultId;
  const store = await openStore({ kind: 'sqlite', file: join(config.DATA_DIR, 'gateway.sqlite') });
  let broker: Broker | null = null;
  let link: VehicleLink | undefined;
  let watchdog: RelockWatchdog | undefined;
  try {
    if (!config.MQTT_URL) {
      broker = await createBroker({
        tls: {
          ca: material.ca,
          cert: material.brokerCert,
          key: material.brokerKey,
          ...(material.crl ? { crl: material.crl } : {}),
        },
        host: config.MQTT_HOST,
        port: config.MQTT_PORT,
        logger: logger.child({ component: 'broker' }),
      });
    }
    const brokerUrl =
      config.MQTT_URL ??
      `mqtts://${config.MQTT_HOST === '0.0.0.0' ? '127.0.0.1' : config.MQTT_HOST}:${broker?.port}`;
    const vehicles = createVehicleService({
      db: store.db,
      catalog: deps.catalog,
      now,
      newId,
      maxRadiusM: config.MAX_RADIUS_M,
    });
    const deliveries = createDeliveryService({
      db: store.db,
      link: () => link ?? null,
      signer: {
        privateKey: createPrivateKey(material.tokenSigningKey),
        kid: material.tokenKid,
        issuer: 'urn:gateway:gateway',
      },
      policy: {
        maxWindowMs: config.MAX_WINDOW_H * 3_600_000,
        defaultWindowMs: config.DEFAULT_WINDOW_H * 3_600_000,
        maxUnlocks: config.MAX_UNLOCKS,
        tokenTtlS: config.TOKEN_TTL_S,
        commandTimeoutMs: config.COMMAND_TIMEOUT_MS,
        relockAfterMs: config.RELOCK_AFTER_S * 1000,
        parkingToleranceM: config.PARKING_TOLERANCE_M,
      },
      now,
      newId,
      logger: logger.child({ component: 'deliveries' }),
      ...(deps.notify ? { notify: deps.notify } : {}),
    });
    const linkLogger = logger.child({ component: 'vehicle-link' });
    link = await connectVehicleLink({
      url: brokerUrl,
      clientId: `gateway-${config.GATEWAY_REPLICA}`,
      tls: { ca: material.ca, cert: material.gatewayCert, key: material.gatewayKey },
      logger: linkLogger,
      providerOf: (vin) => providerOf(store.db, vin),
      onState: async (vin, message) => {
        try {
          await vehicles.observe(vin, message);
          await deliveries.observe(vin, message);
        } catch (err) {
          linkLogger.error({ err, vin }, 'state not recorded');
        }
      },
    });
    const connectedLink = link;
    const control = createControlService({
      db: store.db,
      deliveries,
      now,
      logger: logger.child({ component: 'control' }),
      ...(deps.onDeliveryRevoked ? { onDeliveryRevoked: deps.onDeliveryRevoked } : {}),
    });
    watchdog = createRelockWatchdog({
      db: store.db,
      deliveries,
      relockAfterMs: config.RELOCK_AFTER_S * 1000,
      now: deps.watchdog?.now ?? now,
      logger: logger.child({ component: 'watchdog' }),
      ...(deps.watchdog?.every ? { every: deps.watchdog.every } : {}),
    });
    const app = await buildApp({ db: store.db, vehicles, deliveries, control, logger });
    // Started last, on a store that may hold unlocks from before a restart: those are swept like any other.
    watchdog.start(config.WATCHDOG_INTERVAL_S * 1000);
    const startedWatchdog = watchdog;
    return {
      app,
      store,
      broker,
      brokerUrl,
      link: connectedLink,
      vehicles,
      deliveries,
      control,
      watchdog: startedWatchdog,
      async createApiKey(label) {
        const key = `ck_${randomBytes(24).toString('base64url')}`;
        await insertApiKey(store.db, {
          id: `key_${newId()}`,
          hash: hashApiKey(key),
          label,
          createdAt: now(),
        });
        return key;
      },
      async close() {
        await startedWatchdog.stop();
        await app.close();
        await connectedLink.close();
        await broker?.close();
        await store.close();
      },
    };
  } catch (err) {
    await watchdog?.stop();
    await link?.close();
    await broker?.close();
    await store.close();
    throw err;
  }
}

// Owns assembling one gateway replica: store, optional embedded broker, MQTT link, services and HTTP app.
import { createPrivateKey, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { type Catalog, TOKEN_ISSUER } from '../protocols/index.ts';
import { type Broker, createBroker } from './broker/broker.ts';
import type { Config } from './config.ts';
import { createDeliveryService, type DeliveryService } from './deliveries.ts';
import { buildApp } from './http/app.ts';
import { hashApiKey } from './http/auth.ts';
import { createKeyRotation, type KeyRotation } from './key-rotation.ts';
import { createSigningKeyRing, type SigningKeyRing } from './signing-keys.ts';
import { insertApiKey } from './store/records.ts';
import { openStore, type Store } from './store/store.ts';
import { pinVehicleCertificate } from './vehicle-certs.ts';
import { connectVehicleLink, type VehicleLink } from './vehicle-link.ts';
import { createVehicleService, type VehicleService } from './vehicles.ts';

export interface GatewayMaterial {
  ca: string;
  brokerCert: string;
  brokerKey: string;
  gatewayCert: string;
  gatewayKey: string;
  /** PKCS#8 PEM of the Ed25519 token-signing key, the active key of the ring. */
  tokenSigningKey: string;
  crl?: string;
  /** The certificate the CA issued to a VIN, PEM, or null; read when a vehicle is linked, to pin it. */
  vehicleCertificate?: (vin: string) => string | null;
}

export interface GatewayDeps {
  config: Config;
  material: GatewayMaterial;
  catalog: Catalog;
  logger: Logger;
  now?: () => number;
  newId?: () => string;
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
  /** The token-signing keys: the active one signs; others wait for cars to trust them or to be retired. */
  signingKeys: SigningKeyRing;
  /** Signs key announcements and sends them to cars (TOKEN.md §8). */
  keyRotation: KeyRotation;
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
      certificateFor: (vin, at) =>
        pinVehicleCertificate({
          pem: material.vehicleCertificate?.(vin) ?? null,
          caPem: material.ca,
          vin,
          now: at,
        }),
    });
    const backfill = await vehicles.pinMissingCertificates();
    if (backfill.unpinned.length > 0) {
      logger.warn(
        { event: 'vehicles.certificate_missing', vins: backfill.unpinned },
        'linked vehicles without a valid certificate: their acks will be refused',
      );
    }
    const linkLogger = logger.child({ component: 'vehicle-link' });
    link = await connectVehicleLink({
      url: brokerUrl,
      clientId: `gateway-${config.GATEWAY_REPLICA}`,
      tls: { ca: material.ca, cert: material.gatewayCert, key: material.gatewayKey },
      logger: linkLogger,
      onState: (vin, message) => {
        vehicles
          .observe(vin, message)
          .catch((err: unknown) => linkLogger.error({ err, vin }, 'state not recorded'));
      },
    });
    const connectedLink = link;
    const signingKeys = await createSigningKeyRing(createPrivateKey(material.tokenSigningKey));
    const deliveries = createDeliveryService({
      db: store.db,
      link: () => connectedLink,
      signer: { keys: signingKeys, issuer: TOKEN_ISSUER },
      policy: {
        maxWindowMs: config.MAX_WINDOW_H * 3_600_000,
        maxUnlocks: config.MAX_UNLOCKS,
        tokenTtlS: config.TOKEN_TTL_S,
        commandTimeoutMs: config.COMMAND_TIMEOUT_MS,
      },
      now,
      newId,
      logger: logger.child({ component: 'deliveries' }),
    });
    const keyRotation = createKeyRotation({
      db: store.db,
      link: () => connectedLink,
      keys: signingKeys,
      issuer: TOKEN_ISSUER,
      commandTimeoutMs: config.COMMAND_TIMEOUT_MS,
      now,
      newId,
      logger: logger.child({ component: 'key-rotation' }),
    });
    const app = await buildApp({ db: store.db, vehicles, deliveries, logger });
    return {
      app,
      store,
      broker,
      brokerUrl,
      link: connectedLink,
      vehicles,
      deliveries,
      signingKeys,
      keyRotation,
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
        await app.close();
        await connectedLink.close();
        await broker?.close();
        await store.close();
      },
    };
  } catch (err) {
    await link?.close();
    await broker?.close();
    await store.close();
    throw err;
  }
}

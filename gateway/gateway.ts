// Owns assembling one gateway replica: store, optional embedded broker, MQTT link, services and HTTP app.
import { createPrivateKey, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Catalog } from '../protocols/index.ts';
import { ADMIN_GRANT, createApiKey, type Grant } from './api-keys.ts';
import { type Broker, createBroker } from './broker/broker.ts';
import type { Config } from './config.ts';
import { createDeliveryService, type DeliveryService } from './deliveries.ts';
import { buildApp } from './http/app.ts';
import type { IdempotencyPolicy } from './idempotency.ts';
import { openStore, type Store } from './store/store.ts';
import { connectVehicleLink, type VehicleLink } from './vehicle-link.ts';
import { createVehicleService, type VehicleService } from './vehicles.ts';
import {
  createWebhookDispatcher,
  type DispatchPolicy,
  type WebhookDispatcher,
  type WebhookSender,
} from './webhooks/dispatcher.ts';
import { createOutboxNotify } from './webhooks/outbox.ts';
import { createSecretBox, deriveSecretKey } from './webhooks/secret-box.ts';

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
  /** Webhook delivery: timings (tests shorten them) and the transport (fetch by default). */
  webhooks?: { policy?: Partial<DispatchPolicy>; send?: WebhookSender; random?: () => number };
  idempotency?: Partial<IdempotencyPolicy>;
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
  webhooks: WebhookDispatcher;
  /** Creates an API key (admin unless a grant is given), stores only its hash, and returns the key once. */
  createApiKey(label: string, grant?: Grant): Promise<string>;
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
    });
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
    // Webhook secrets are sealed with a key derived from the token-signing key: secret on every replica already.
    const webhookSecrets = createSecretBox(deriveSecretKey(material.tokenSigningKey));
    const webhooks = createWebhookDispatcher({
      db: store.db,
      secrets: webhookSecrets,
      logger: logger.child({ component: 'webhooks' }),
      now,
      ...deps.webhooks,
    });
    const deliveries = createDeliveryService({
      db: store.db,
      link: () => connectedLink,
      signer: {
        privateKey: createPrivateKey(material.tokenSigningKey),
        kid: material.tokenKid,
        issuer: 'urn:gateway:gateway',
      },
      policy: {
        maxWindowMs: config.MAX_WINDOW_H * 3_600_000,
        maxUnlocks: config.MAX_UNLOCKS,
        tokenTtlS: config.TOKEN_TTL_S,
        commandTimeoutMs: config.COMMAND_TIMEOUT_MS,
      },
      now,
      newId,
      logger: logger.child({ component: 'deliveries' }),
      notify: createOutboxNotify({ newId, onEnqueued: () => webhooks.kick() }),
    });
    const app = await buildApp({
      db: store.db,
      vehicles,
      deliveries,
      logger,
      webhookSecrets,
      now,
      newId,
      ...(deps.idempotency ? { idempotency: deps.idempotency } : {}),
    });
    webhooks.start();
    return {
      app,
      store,
      broker,
      brokerUrl,
      link: connectedLink,
      vehicles,
      deliveries,
      webhooks,
      async createApiKey(label, grant = ADMIN_GRANT) {
        const made = await createApiKey(store.db, { label, grant, now: now(), id: `key_${newId()}` });
        return made.key;
      },
      async close() {
        await app.close();
        await webhooks.stop();
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

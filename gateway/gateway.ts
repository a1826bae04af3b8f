// Owns assembling one gateway replica: store, optional embedded broker, MQTT link, services and HTTP app.
import { createPrivateKey, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { type Catalog, TOKEN_ISSUER } from '../protocols/index.ts';
import { VIN_PATTERN } from '../protocols/vin.ts';
import { type AuditLog, createAuditLog } from './audit-log.ts';
import { type Broker, createBroker } from './broker/broker.ts';
import { type CrlWatch, watchCrl } from './broker/crl-watch.ts';
import type { Config } from './config.ts';
import { createDeliveryService, type DeliveryService } from './deliveries.ts';
import { buildApp } from './http/app.ts';
import { hashApiKey } from './http/auth.ts';
import { buildMetricsApp } from './http/operations.ts';
import { createKeyRotation, type KeyRotation } from './key-rotation.ts';
import { createLifecycle, type Lifecycle } from './lifecycle.ts';
import { createMetrics, type GatewayMetrics } from './metrics.ts';
import { createReadiness, type ReadinessReport } from './readiness.ts';
import { createSigningKeyRing, type SigningKeyRing } from './signing-keys.ts';
import { countOnlineVehicles, insertApiKey } from './store/records.ts';
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
  /** PEM of the CA's current CRL; the embedded broker does not start without one. */
  crl: string;
  /** Where the CRL lives: the embedded broker re-reads it when it changes (npm run certs -- revoke). */
  crlFile?: string;
  /** PKCS#8 PEM of the Ed25519 audit checkpoint key; without it the log is kept but not checkpointed. */
  auditCheckpointKey?: string;
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
  /** A fresh registry per gateway unless given. */
  metrics?: GatewayMetrics;
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
  metrics: GatewayMetrics;
  /** The separate /metrics server when METRICS_PORT is set (not listening yet), else null. */
  metricsApp: FastifyInstance | null;
  lifecycle: Lifecycle;
  readiness(): Promise<ReadinessReport>;
  audit: AuditLog;
  /** The token-signing keys: the active one signs; others wait for cars to trust them or to be retired. */
  signingKeys: SigningKeyRing;
  /** Signs key announcements and sends them to cars (TOKEN.md §8). */
  keyRotation: KeyRotation;
  /** Creates an API key, stores only its hash, and returns the key once. */
  createApiKey(label: string): Promise<string>;
  /**
   * The first half of close: refuses new requests (503 SHUTTING_DOWN), lets in-flight commands finish
   * within SHUTDOWN_DRAIN_MS (or drainMs), then ends the ones still waiting as timeouts, so that their
   * timelines are complete. Everything stays open. Idempotent.
   */
  drain(options?: { drainMs?: number }): Promise<void>;
  /** Graceful stop: drain, then close HTTP, MQTT link, broker and store in that order. Idempotent. */
  close(options?: { drainMs?: number }): Promise<void>;
}

/** After the drain bound, commands still waiting are ended as timeouts; this bounds their last store writes. */
const SETTLE_AFTER_DRAIN_MS = 5_000;

/** Sessions on the embedded broker whose client id is a VIN (the broker ties it to the certificate). */
function vehicleSessions(broker: Broker): number {
  // aedes keeps its sessions in `clients` but does not declare it in its types.
  const clients = (broker.aedes as unknown as { clients: Record<string, { id: string }> }).clients;
  return Object.values(clients).filter((c) => VIN_PATTERN.test(c.id)).length;
}

const defaultId = (): string => randomUUID().replaceAll('-', '');

export async function startGateway(deps: GatewayDeps): Promise<Gateway> {
  const { config, material, logger } = deps;
  const now = deps.now ?? Date.now;
  const newId = deps.newId ?? defaultId;
  const metrics = deps.metrics ?? createMetrics();
  const lifecycle = createLifecycle();
  const store = await openStore({ kind: 'sqlite', file: join(config.DATA_DIR, 'gateway.sqlite') }, (q) =>
    metrics.storeQuery(q),
  );
  let broker: Broker | null = null;
  let crlWatch: CrlWatch | null = null;
  let link: VehicleLink | undefined;
  try {
    if (!config.MQTT_URL) {
      const brokerLogger = logger.child({ component: 'broker' });
      broker = await createBroker({
        tls: { ca: material.ca, cert: material.brokerCert, key: material.brokerKey, crl: material.crl },
        host: config.MQTT_HOST,
        port: config.MQTT_PORT,
        logger: brokerLogger,
      });
      if (material.crlFile) {
        crlWatch = watchCrl({ file: material.crlFile, broker, logger: brokerLogger, current: material.crl });
      }
    }
    const brokerUrl =
      config.MQTT_URL ??
      `mqtts://${config.MQTT_HOST === '0.0.0.0' ? '127.0.0.1' : config.MQTT_HOST}:${broker?.port}`;
    // The certificate the CA issued a VIN, checked against the CA, the VIN and the time (TOKEN.md §9.3).
    const enrolledCertificate = (vin: string, at: number) =>
      pinVehicleCertificate({
        pem: material.vehicleCertificate?.(vin) ?? null,
        caPem: material.ca,
        vin,
        now: at,
      });
    const currentCertificate = (vin: string, at: number): string | null => {
      const enrolled = enrolledCertificate(vin, at);
      return enrolled.ok ? enrolled.certificate.toString() : null;
    };
    const vehicles = createVehicleService({
      db: store.db,
      catalog: deps.catalog,
      now,
      newId,
      maxRadiusM: config.MAX_RADIUS_M,
      certificateFor: enrolledCertificate,
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
      onUnmatchedAck: (vin, ack) => {
        // Late (after its timeout) or meant for another replica: either way nobody here waits for it.
        linkLogger.debug(
          { event: 'ack.unmatched', vin, deliveryId: ack.deliveryId, commandId: ack.commandId },
          'ack nobody waits for',
        );
      },
    });
    const connectedLink = link;
    const embedded = broker;
    metrics.countCarsWith(embedded ? () => vehicleSessions(embedded) : () => countOnlineVehicles(store.db));
    const signingKey = createPrivateKey(material.tokenSigningKey);
    const signingKeys = await createSigningKeyRing(signingKey);
    const service = createDeliveryService({
      db: store.db,
      link: () => connectedLink,
      signer: { keys: signingKeys, issuer: TOKEN_ISSUER },
      currentCertificate,
      policy: {
        maxWindowMs: config.MAX_WINDOW_H * 3_600_000,
        maxUnlocks: config.MAX_UNLOCKS,
        tokenTtlS: config.TOKEN_TTL_S,
        commandTimeoutMs: config.COMMAND_TIMEOUT_MS,
      },
      now,
      newId,
      logger: logger.child({ component: 'deliveries' }),
      observer: metrics,
    });
    // Commands run as in flight, so that shutdown waits for them and refuses new ones.
    const deliveries: DeliveryService = {
      ...service,
      unlock: (id, input) => lifecycle.track(() => service.unlock(id, input)),
      lock: (id, input) => lifecycle.track(() => service.lock(id, input)),
    };
    const readiness = createReadiness({
      store: async () => {
        await store.ping();
        return null;
      },
      mqtt: () => (connectedLink.connected() ? null : `no MQTT session with ${brokerUrl}`),
      signingKey: () =>
        signingKey.type === 'private' && signingKey.asymmetricKeyType === 'ed25519'
          ? null
          : 'no Ed25519 token-signing key',
      shutdown: () => (lifecycle.draining() ? 'shutting down' : null),
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
      currentCertificate,
    });
    const metricsApp = config.METRICS_PORT === undefined ? null : await buildMetricsApp(metrics);
    const audit = createAuditLog({
      db: store.db,
      signer: material.auditCheckpointKey
        ? { origin: config.AUDIT_ORIGIN, privateKey: createPrivateKey(material.auditCheckpointKey) }
        : null,
      now,
    });
    const auditLogger = logger.child({ component: 'audit' });
    if (!audit.origin)
      auditLogger.warn({ event: 'audit.no_key' }, 'no checkpoint key: the audit log is not signed');
    const checkpointNow = (): Promise<unknown> =>
      audit.origin
        ? audit.checkpoint().catch((err: unknown) => auditLogger.error({ err }, 'checkpoint failed'))
        : Promise.resolve();
    const checkpointTimer = setInterval(checkpointNow, config.AUDIT_CHECKPOINT_S * 1000);
    checkpointTimer.unref();
    const app = await buildApp({
      db: store.db,
      vehicles,
      deliveries,
      logger,
      audit,
      operations: {
        metrics,
        serveMetrics: metricsApp === null,
        readiness,
        draining: lifecycle.draining,
      },
    });
    let closeLink: Promise<void> | null = null;
    const endLink = (): Promise<void> => {
      closeLink ??= connectedLink.close();
      return closeLink;
    };
    let draining: Promise<void> | null = null;
    let closing: Promise<void> | null = null;
    const drainCommands = async (drainMs: number): Promise<void> => {
      lifecycle.beginDrain();
      logger.info({ event: 'shutdown.drain', inFlight: lifecycle.inFlight(), drainMs }, 'draining');
      if (!(await lifecycle.idle(drainMs))) {
        logger.warn(
          { event: 'shutdown.drain_timeout', inFlight: lifecycle.inFlight(), drainMs },
          'commands still waiting for acks are ended as timeouts',
        );
        await endLink();
        await lifecycle.idle(SETTLE_AFTER_DRAIN_MS);
      }
    };
    const drain = (options: { drainMs?: number } = {}): Promise<void> => {
      draining ??= drainCommands(options.drainMs ?? config.SHUTDOWN_DRAIN_MS);
      return draining;
    };
    const shutdown = async (options: { drainMs?: number }): Promise<void> => {
      await drain(options);
      crlWatch?.close();
      clearInterval(checkpointTimer);
      await app.close();
      await metricsApp?.close();
      await endLink();
      // The last decisions get a signed head before the store closes.
      await checkpointNow();
      await broker?.close();
      await store.close();
      logger.info({ event: 'shutdown.done' }, 'stopped');
    };
    return {
      app,
      store,
      broker,
      brokerUrl,
      link: connectedLink,
      vehicles,
      deliveries,
      metrics,
      metricsApp,
      lifecycle,
      readiness,
      audit,
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
      drain,
      close(options = {}) {
        closing ??= shutdown(options);
        return closing;
      },
    };
  } catch (err) {
    crlWatch?.close();
    await link?.close();
    await broker?.close();
    await store.close();
    throw err;
  }
}

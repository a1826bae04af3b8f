// Owns assembling one gateway replica: store, optional embedded broker, MQTT link, services and HTTP app.
import { createPrivateKey, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { type Catalog, type StateReport, TOKEN_ISSUER } from '../protocols/index.ts';
import { ADMIN_GRANT, createApiKey, type Grant } from './access/api-keys.ts';
import { type AuditLog, createAuditLog, scheduleCheckpoints } from './audit/log.ts';
import { type Broker, createBroker, vehicleSessions } from './broker/broker.ts';
import type { CrlWatch } from './broker/crl-watch.ts';
import { joinReplicas, type Replica } from './cluster/replica.ts';
import { serialiseAcrossReplicas } from './cluster/serialised-writes.ts';
import { type ConsoleHub, createConsoleHub } from './console/hub.ts';
import { createSimulatorControl, noSimulator } from './console/simulator.ts';
import { routeCarMessages } from './deliveries/car-messages.ts';
import { deliveryPolicyOf } from './deliveries/context.ts';
import { type ControlService, createControlService, type OnDeliveryRevoked } from './deliveries/control.ts';
import { createKeyedMutex } from './deliveries/keyed-mutex.ts';
import type { Notify } from './deliveries/notifications.ts';
import { createReconciler, type Reconciler } from './deliveries/reconcile.ts';
import { createDeliveryService, type DeliveryService } from './deliveries/service.ts';
import { createRelockWatchdog, type Every, type RelockWatchdog, realEvery } from './deliveries/watchdog.ts';
import { buildApp } from './http/app.ts';
import type { IdempotencyPolicy } from './http/idempotency-records.ts';
import { createIdempotencyScope } from './http/idempotency-scope.ts';
import { buildMetricsApp, listeningAt } from './http/operations.ts';
import type { Config } from './platform/config.ts';
import { createLifecycle, drainOnce, type Lifecycle } from './platform/lifecycle.ts';
import type { GatewayMaterial } from './platform/material.ts';
import { createMetrics, type GatewayMetrics } from './platform/metrics.ts';
import { createReadiness, type ReadinessReport } from './platform/readiness.ts';
import { openStore, type Store, storeConfigOf } from './store/store.ts';
import { countOnlineVehicles, findVehicleCertificate, providerOf } from './store/vehicles.ts';
import { enrolledCertificates } from './vehicles/certificates.ts';
import { createKeyRotation, type KeyRotation } from './vehicles/key-rotation.ts';
import { createVehicleLimiter } from './vehicles/limiter.ts';
import { type ConnectMqtt, connectVehicleLink, type MqttVehicleLink } from './vehicles/link.ts';
import { providerMemo } from './vehicles/provider-memo.ts';
import { createVehicleRevocation, followRevocations } from './vehicles/revocation.ts';
import { createSigningKeyRing, type SigningKeyRing } from './vehicles/signing-keys.ts';
import { createVehicleService, type VehicleService } from './vehicles/vehicles.ts';
import { createWebhookDelivery } from './webhooks/delivery.ts';
import type { DispatchPolicy, WebhookDispatcher } from './webhooks/dispatcher.ts';
import { createOutboxNotify } from './webhooks/outbox.ts';
import type { Resolve, WebhookSender } from './webhooks/sender.ts';
import { countPendingOutbox } from './webhooks/store.ts';

export interface GatewayDeps {
  config: Config;
  material: GatewayMaterial;
  catalog: Catalog;
  logger: Logger;
  now?: () => number;
  newId?: () => string;
  /** A fresh registry per gateway unless given. */
  metrics?: GatewayMetrics;
  /** Receives every domain event, in the transaction of its decision; events go nowhere by default. */
  notify?: Notify;
  /**
   * Called when a delivery's access is revoked for good, after its car was relocked (control.ts). By default
   * the gateway sends the car a signed revoke (TOKEN.md §10).
   */
  onDeliveryRevoked?: OnDeliveryRevoked;
  /** The relock watchdog's clock and timer (default: `now` and setInterval), so tests need not wait. */
  watchdog?: { now?: () => number; every?: Every };
  /**
   * Webhook delivery: timings (tests shorten them), the resolver (getaddrinfo by default) and the transport
   * (node:http(s) to checked addresses by default; the URL rules apply whatever the transport).
   */
  webhooks?: {
    policy?: Partial<DispatchPolicy>;
    send?: WebhookSender;
    resolve?: Resolve;
    random?: () => number;
  };
  idempotency?: Partial<IdempotencyPolicy>;
  /** The console's live streams: heartbeat (and key re-check) period; tests shorten it. */
  console?: { heartbeatMs?: number };
  /** Opens the gateway's MQTT client (mqtt.connect by default); tests wrap it to lose messages. */
  connectMqtt?: ConnectMqtt;
}

export interface Gateway {
  app: FastifyInstance;
  store: Store;
  broker: Broker | null;
  /** The broker URL cars should use (embedded or external). */
  brokerUrl: string;
  link: MqttVehicleLink;
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
  control: ControlService;
  watchdog: RelockWatchdog;
  /** Settles outstanding commands and relocked deliveries from what cars say (sweeps on its own timer too). */
  reconciler: Reconciler;
  webhooks: WebhookDispatcher;
  /** The console's live feed (gateway/console/): what changed, to every open stream that may see it. */
  console: ConsoleHub;
  /** Creates an API key (admin unless a grant is given), stores only its hash, and returns the key once. */
  createApiKey(label: string, grant?: Grant): Promise<string>;
  /**
   * The first half of close: refuses new requests (503 SHUTTING_DOWN), lets in-flight commands finish
   * within SHUTDOWN_DRAIN_MS (or drainMs), then ends the ones still waiting as timeouts, so that their
   * timelines are complete. Everything stays open. Idempotent.
   */
  drain(options?: { drainMs?: number }): Promise<void>;
  /** Graceful stop: drain, then close HTTP, MQTT link, broker and store in that order. Idempotent. */
  close(options?: { drainMs?: number }): Promise<void>;
}

const defaultId = (): string => randomUUID().replaceAll('-', '');

export async function startGateway(deps: GatewayDeps): Promise<Gateway> {
  const { config, material, logger } = deps;
  const now = deps.now ?? Date.now;
  const newId = deps.newId ?? defaultId;
  const metrics = deps.metrics ?? createMetrics();
  const lifecycle = createLifecycle();
  const store = await openStore(storeConfigOf(config), (q) => metrics.storeQuery(q));
  let broker: Broker | null = null;
  let crlWatch: CrlWatch | null = null;
  let link: MqttVehicleLink | undefined;
  let watchdog: RelockWatchdog | undefined;
  let reconciler: Reconciler | undefined;
  let replica: Replica | null = null;
  let reconcileTimer: NodeJS.Timeout | null = null;
  try {
    // Several replicas on one PostgreSQL store share leases, rate limits and acks (gateway/cluster/).
    replica = await joinReplicas({
      config,
      db: store.db,
      link: () => link ?? null,
      now,
      logger: logger.child({ component: 'cluster' }),
    });
    const cluster = replica;
    // The gateway's own reading of the CRL the broker enforces, so that a revoked car gets no command through an
    // external broker too (which may keep its live session), and shows revoked and offline at once.
    const revocation = createVehicleRevocation({
      caPem: material.ca,
      crl: material.crl,
      ...(material.vehicleCertificate ? { issuedCertificate: material.vehicleCertificate } : {}),
      pinnedCertificate: (vin) => findVehicleCertificate(store.db, vin),
    });
    const brokerLogger = logger.child({ component: 'broker' });
    if (!config.MQTT_URL) {
      broker = await createBroker({
        tls: { ca: material.ca, cert: material.brokerCert, key: material.brokerKey, crl: material.crl },
        host: config.MQTT_HOST,
        port: config.MQTT_PORT,
        logger: brokerLogger,
      });
    }
    const brokerUrl =
      config.MQTT_URL ??
      `mqtts://${config.MQTT_HOST === '0.0.0.0' ? '127.0.0.1' : config.MQTT_HOST}:${broker?.port}`;
    // The services' writes mark the Idempotency-Key of the request they serve, in their own transaction.
    const idempotencyScope = createIdempotencyScope();
    // With several replicas each unit first takes the audit log's lock, so appends from replicas form one chain.
    const write = idempotencyScope.wrap(cluster ? serialiseAcrossReplicas(store.write) : store.write);
    const { enrolledCertificate, currentCertificate } = enrolledCertificates(
      material.ca,
      material.vehicleCertificate,
    );
    const vehicles = createVehicleService({
      db: store.db,
      write,
      catalog: deps.catalog,
      now,
      newId,
      maxRadiusM: config.MAX_RADIUS_M,
      certificateFor: enrolledCertificate,
      certificateRevoked: revocation.isRevoked,
    });
    crlWatch = followRevocations({
      broker,
      revocation,
      sessionRevoked: (vin) => vehicles.sessionRevoked(vin),
      crlFile: material.crlFile,
      current: material.crl,
      logger: brokerLogger,
    });
    const backfill = await vehicles.pinMissingCertificates();
    if (backfill.unpinned.length > 0) {
      logger.warn(
        { event: 'vehicles.certificate_missing', vins: backfill.unpinned },
        'linked vehicles without a valid certificate: their acks will be refused',
      );
    }
    const consoleHub = createConsoleHub({
      db: store.db,
      settled: store.write.settled,
      logger: logger.child({ component: 'console' }),
    });
    const { webhookSecrets, webhookDestinations, webhooks } = createWebhookDelivery({
      config,
      db: store.db,
      tokenSigningKey: material.tokenSigningKey,
      logger: logger.child({ component: 'webhooks' }),
      now,
      onAttemptFailed: () => metrics.webhookFailed(),
      onSettled: (id) => consoleHub.webhookDeliveriesChanged([id]),
      ...(deps.webhooks ? { options: deps.webhooks } : {}),
    });
    metrics.countOutboxWith(() => countPendingOutbox(store.db));
    const outbox = createOutboxNotify({
      newId,
      // Noted inside the decision's transaction: the dispatcher reads the rows once it has committed.
      onEnqueued: (ids) => {
        void store.write.settled().then(() => webhooks.kick());
        consoleHub.webhookDeliveriesChanged(ids);
      },
    });
    // Every domain event goes to the webhook outbox and the console, in the decision's transaction; a caller's
    // notify hears it too.
    const notify: Notify = async (trx, event) => {
      await outbox(trx, event);
      await consoleHub.notify(trx, event);
      await deps.notify?.(trx, event);
    };
    // One command at a time per delivery, shared by requests, the watchdog and the reconciler; across replicas too.
    const mutex = cluster?.holds ?? createKeyedMutex();
    reconciler = createReconciler({
      db: store.db,
      link: () => link ?? null,
      guard: mutex,
      now,
      logger: logger.child({ component: 'reconcile' }),
      queryTimeoutMs: config.QUERY_TIMEOUT_MS,
      // With several replicas the sweep runs on one of them at a time (below).
      intervalMs: cluster ? 0 : config.RECONCILE_INTERVAL_MS,
      currentCertificate,
      write,
      notify,
      ...(cluster ? { heldElsewhere: (ids: readonly string[]) => cluster.holds.heldElsewhere(ids) } : {}),
    });
    const startedReconciler = reconciler;
    // Before anything can send: commands a crash left 'sent' have lost their request (PROTOCOL.md §6.5).
    await startedReconciler.recoverAtStart();
    const embedded = broker;
    metrics.countCarsWith(embedded ? () => vehicleSessions(embedded) : () => countOnlineVehicles(store.db));
    const signingKey = createPrivateKey(material.tokenSigningKey);
    const signingKeys = await createSigningKeyRing(signingKey);
    const service = createDeliveryService({
      db: store.db,
      write,
      link: () => link ?? null,
      signer: { keys: signingKeys, issuer: TOKEN_ISSUER },
      currentCertificate,
      policy: deliveryPolicyOf(config),
      now,
      newId,
      logger: logger.child({ component: 'deliveries' }),
      observer: metrics,
      mutex,
      reconciler: startedReconciler,
      limiter:
        cluster?.vehicleLimiter ??
        createVehicleLimiter(
          { burst: config.VEHICLE_COMMAND_BURST, perMinute: config.VEHICLE_COMMANDS_PER_MIN },
          now,
        ),
      notify,
      certificateRevoked: revocation.isRevoked,
    });
    const linkLogger = logger.child({ component: 'vehicle-link' });
    const routed = routeCarMessages({
      vehicles,
      deliveries: service,
      reconciler: startedReconciler,
      logger: linkLogger,
      onRecorded: (vin) => consoleHub.vehicleChanged(vin),
    });
    link = await connectVehicleLink({
      url: brokerUrl,
      ...(deps.connectMqtt ? { connect: deps.connectMqtt } : {}),
      clientId: `gateway-${config.GATEWAY_REPLICA}`,
      probe: { intervalMs: config.MQTT_PROBE_INTERVAL_S * 1_000, timeoutMs: config.MQTT_PROBE_TIMEOUT_MS },
      onDeafSubscription: () => metrics.deafSubscription(),
      // An external broker may come up after the gateway: start not ready and keep trying (/readyz says why).
      // The embedded one is ours and already listening, so not reaching it fails the start.
      firstAttemptMayFail: config.MQTT_URL !== undefined,
      setting: config.MQTT_URL ? 'MQTT_URL' : 'embedded broker, MQTT_HOST and MQTT_PORT',
      tls: { ca: material.ca, cert: material.gatewayCert, key: material.gatewayKey },
      logger: linkLogger,
      providerOf: providerMemo((vin) => providerOf(store.db, vin)),
      onState: routed.onState,
      onUnmatchedAck: cluster
        ? (vin, ack) => {
            // Perhaps another replica's request waits for it: recorded for it first, then reconciled as usual
            // (the reconciler leaves a command alone while another replica holds its delivery).
            cluster.acks.record(vin, ack).then(
              () => routed.onUnmatchedAck(vin, ack),
              (err: unknown) => {
                linkLogger.error(
                  { err, vin, commandId: ack.commandId },
                  'ack not recorded for the other replicas',
                );
                routed.onUnmatchedAck(vin, ack);
              },
            );
          }
        : routed.onUnmatchedAck,
      ...(cluster
        ? {
            recheckAck: (vin: string, commandId: string) => cluster.acks.find(vin, commandId),
            // The answer to another replica's state query: recorded for it (this replica recorded the report too).
            onUnmatchedReport: (vin: string, report: StateReport) => {
              cluster.acks
                .recordReport(vin, report)
                .catch((err: unknown) =>
                  linkLogger.error({ err, vin }, 'state answer not recorded for the other replicas'),
                );
            },
            recheckReport: (vin: string, nonce: string) => cluster.acks.findReport(vin, nonce),
          }
        : {}),
    });
    const connectedLink = link;
    // Commands run as in flight, so that shutdown waits for them and refuses new ones.
    const deliveries: DeliveryService = {
      ...service,
      unlock: (id, input) => lifecycle.track(() => service.unlock(id, input)),
      lock: (id, input) => lifecycle.track(() => service.lock(id, input)),
    };
    const control = createControlService({
      db: store.db,
      write,
      deliveries,
      now,
      logger: logger.child({ component: 'control' }),
      // By default a revoked delivery's tokens are withdrawn at the car too, with a signed revoke (TOKEN.md §10).
      onDeliveryRevoked:
        deps.onDeliveryRevoked ??
        (async (id) => {
          await service.revokeDelivery(id);
        }),
    });
    watchdog = createRelockWatchdog({
      db: store.db,
      deliveries,
      relockAfterMs: config.RELOCK_AFTER_S * 1000,
      now: deps.watchdog?.now ?? now,
      logger: logger.child({ component: 'watchdog' }),
      ...(cluster
        ? {
            // Each tick runs on the replica holding the watchdog's lease; the others skip it.
            every: (ms: number, fn: () => void) =>
              (deps.watchdog?.every ?? realEvery)(ms, () => {
                void cluster.jobs.runIfLeader('watchdog', cluster.jobTtlMs(ms), async () => fn());
              }),
          }
        : deps.watchdog?.every
          ? { every: deps.watchdog.every }
          : {}),
      onRelocked: () => metrics.watchdogRelocked(),
    });
    const startedWatchdog = watchdog;
    const readiness = createReadiness({
      store: async () => {
        await store.ping();
        return null;
      },
      mqtt: () => connectedLink.problem(),
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
      write,
      signer: material.auditCheckpointKey
        ? { origin: config.AUDIT_ORIGIN, privateKey: createPrivateKey(material.auditCheckpointKey) }
        : null,
      now,
    });
    const checkpoints = scheduleCheckpoints(audit, {
      intervalMs: config.AUDIT_CHECKPOINT_S * 1000,
      logger: logger.child({ component: 'audit' }),
      ...(cluster
        ? {
            gate: (sign: () => Promise<unknown>) =>
              cluster.jobs.runIfLeader(
                'audit-checkpoint',
                cluster.jobTtlMs(config.AUDIT_CHECKPOINT_S * 1000),
                sign,
              ),
          }
        : {}),
    });
    const app = await buildApp({
      db: store.db,
      idempotencyScope,
      keyUseWrite: store.write,
      vehicles,
      deliveries,
      logger,
      perKeyPerMinute: config.RATE_LIMIT_PER_KEY_PER_MIN,
      ...(cluster ? { rateLimitStore: cluster.rateLimitStore } : {}),
      requestTimeoutMs: config.HTTP_REQUEST_TIMEOUT_MS,
      audit,
      control,
      webhookSecrets,
      webhookDestinations,
      console: {
        hub: consoleHub,
        simulator: config.SIMULATOR_CONTROL_URL
          ? createSimulatorControl({ url: config.SIMULATOR_CONTROL_URL })
          : noSimulator,
        simulatorConfigured: config.SIMULATOR_CONTROL_URL !== undefined,
        ...(deps.console?.heartbeatMs ? { stream: { heartbeatMs: deps.console.heartbeatMs } } : {}),
      },
      now,
      newId,
      ...(deps.idempotency ? { idempotency: deps.idempotency } : {}),
      operations: {
        metrics,
        serveMetrics: metricsApp === null,
        metricsUrl: () => listeningAt(metricsApp, '/metrics'),
        readiness,
        draining: lifecycle.draining,
      },
    });
    // Started last, on a store that may hold unlocks from before a restart: those are swept like any other.
    startedWatchdog.start(config.WATCHDOG_INTERVAL_S * 1000);
    if (cluster) {
      // One replica at a time reconciles: it also takes over the commands of a replica that died (their holds
      // expired), and forgets relayed acks after a day.
      const reconcileOnce = (): Promise<unknown> =>
        cluster.jobs
          .runIfLeader('reconcile', cluster.jobTtlMs(config.RECONCILE_INTERVAL_MS), async () => {
            await startedReconciler.recoverAtStart();
            // Acks another replica recorded for commands whose replica died: applied as late acks.
            for (const { vin, ack } of await cluster.acks.outstanding())
              await startedReconciler.onAck(vin, ack);
            await startedReconciler.sweep();
            await cluster.acks.purge(now() - 86_400_000);
          })
          .catch((err: unknown) => logger.error({ err, event: 'reconcile.sweep_failed' }, 'sweep failed'));
      if (config.RECONCILE_INTERVAL_MS > 0) {
        reconcileTimer = setInterval(() => void reconcileOnce(), config.RECONCILE_INTERVAL_MS);
        reconcileTimer.unref();
      }
      void reconcileOnce();
    } else {
      void startedReconciler.sweep();
    }
    webhooks.start();
    let closeLink: Promise<void> | null = null;
    const endLink = (): Promise<void> => {
      closeLink ??= connectedLink.close();
      return closeLink;
    };
    let closing: Promise<void> | null = null;
    const drain = drainOnce(lifecycle, { logger, defaultMs: config.SHUTDOWN_DRAIN_MS, endLink });
    const shutdown = async (options: { drainMs?: number }): Promise<void> => {
      await drain(options);
      if (reconcileTimer) clearInterval(reconcileTimer);
      await startedWatchdog.stop();
      await webhooks.stop();
      crlWatch?.close();
      checkpoints.stop();
      await app.close();
      await metricsApp?.close();
      // The reconciler stops taking work at once; closing the link then ends its pending queries.
      const reconciled = startedReconciler.close();
      await endLink();
      await reconciled;
      // The last decisions get a signed head before the store closes.
      await checkpoints.now();
      // A clean stop hands this replica's jobs to the others at once.
      await cluster?.close();
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
      control,
      watchdog: startedWatchdog,
      reconciler: startedReconciler,
      webhooks,
      console: consoleHub,
      async createApiKey(label, grant = ADMIN_GRANT) {
        const made = await createApiKey(store.db, { label, grant, now: now(), id: `key_${newId()}` });
        return made.key;
      },
      drain,
      close(options = {}) {
        closing ??= shutdown(options);
        return closing;
      },
    };
  } catch (err) {
    if (reconcileTimer) clearInterval(reconcileTimer);
    await watchdog?.stop();
    await reconciler?.close();
    await replica?.close();
    crlWatch?.close();
    await link?.close();
    await broker?.close();
    await store.close();
    throw err;
  }
}

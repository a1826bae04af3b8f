// Owns the HTTP API: buildApp(deps) returns a Fastify instance with every route, without listening.
import { randomBytes, randomUUID } from 'node:crypto';
import rateLimit, { type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { registerAuth } from '../access/auth.ts';
import { callerOf, canSeeOwner, carrierForNewDelivery, registerAccessCheck } from '../access/ownership.ts';
import { registerScopeCheck } from '../access/scopes.ts';
import type { AuditLog } from '../audit/log.ts';
import { CONSOLE_PUBLIC_ROUTES, type ConsoleDeps, registerConsole } from '../console/routes.ts';
import type { ControlService } from '../deliveries/control.ts';
import type { DeliveryView as DeliveryViewModel } from '../deliveries/scheduling.ts';
import type { DeliveryService } from '../deliveries/service.ts';
import { ApiError } from '../errors.ts';
import type { Write } from '../store/group-commit.ts';
import type { LocationRecord } from '../store/locations.ts';
import type { Database } from '../store/schema.ts';
import type { VehicleService, VehicleState } from '../vehicles/vehicles.ts';
import { createWebhookDestinations, type WebhookDestinations } from '../webhooks/destination.ts';
import { createSecretBox, type SecretBox } from '../webhooks/secret-box.ts';
import { registerAuditApi } from './audit.ts';
import { registerIdempotency } from './idempotency.ts';
import { DEFAULT_IDEMPOTENCY_POLICY, type IdempotencyPolicy } from './idempotency-records.ts';
import type { IdempotencyScope } from './idempotency-scope.ts';
import { OPENAPI_PATH, registerOpenApi } from './openapi.ts';
import { type OperationsDeps, registerOperations } from './operations.ts';
import { registerProblemHandlers } from './problem.ts';
import { registerWebhookRoutes } from './routes-webhooks.ts';
import {
  ActionParams,
  CancelView,
  CreateDeliveryBody,
  CreateLocationBody,
  DeliveryBlockView,
  DeliveryView,
  EmptyBody,
  IdParams,
  LinkVehicleBody,
  LocationView,
  LockBody,
  ParkingView,
  ReasonBody,
  UnlinkView,
  UnlockBody,
  VehicleBlockView,
  VehicleView,
  VinParams,
} from './schemas.ts';

export interface AppDeps {
  db: Kysely<Database>;
  vehicles: VehicleService;
  deliveries: DeliveryService;
  control: ControlService;
  logger: Logger;
  bodyLimit?: number;
  /** Requests per minute per API key (default 600); 429 RATE_LIMITED with Retry-After beyond it. */
  perKeyPerMinute?: number;
  /** Where request counts live: in this process by default; shared by replicas (gateway/cluster/rate-limits.ts). */
  rateLimitStore?: FastifyRateLimitStoreCtor;
  /** Longest time to receive a whole request (default 30 s): a slow sender gets 408 and is dropped. */
  requestTimeoutMs?: number;
  /** Longest idle time of a connection (default 60 s). */
  connectionTimeoutMs?: number;
  /** /readyz, /metrics, HTTP metrics and the drain refusal (gateway/http/operations.ts). */
  operations?: OperationsDeps;
  /** The audit trail: its routes, and one entry per mutating request (protocols/AUDIT.md). */
  audit?: AuditLog;
  /** Seals webhook secrets; the dispatcher must open them with the same key (an ephemeral one otherwise). */
  webhookSecrets?: SecretBox;
  /** Where webhooks may go (the gateway's settings); by default public https addresses only. */
  webhookDestinations?: WebhookDestinations;
  idempotency?: Partial<IdempotencyPolicy>;
  /** The scope the services' writes mark Idempotency-Keys through (gateway.ts); a fresh one by default. */
  idempotencyScope?: IdempotencyScope;
  /**
   * The store's own write (unwrapped). Given with idempotencyScope, a request's key use is written with its first
   * unit of work instead of in a commit of its own (protocols/AUDIT.md §1).
   */
  keyUseWrite?: Write;
  /** The fleet console at /console: its live feed and the simulator it may drive (gateway/console/). */
  console?: Omit<ConsoleDeps, 'db'>;
  now?: () => number;
  newId?: () => string;
}

const iso = (ms: number): string => new Date(ms).toISOString();

const ignitionOf = (s: string | null): 'on' | 'off' | null => (s === 'on' || s === 'off' ? s : null);

const vehicleView = (v: VehicleState) => ({
  vin: v.vin,
  make: v.make,
  model: v.model,
  year: v.year,
  provider: v.provider,
  ownerId: v.ownerId,
  consent: v.consent,
  blocked: v.blocked,
  online: v.online,
  revoked: v.revoked,
  locked: v.locked,
  ignition: ignitionOf(v.ignition),
  position: v.position,
  lastSeen: v.lastSeen === null ? null : iso(v.lastSeen),
});

const locationView = (l: LocationRecord) => ({
  id: l.id,
  ownerId: l.ownerId,
  label: l.label,
  kind: l.kind,
  access: l.access,
  lat: l.lat,
  lon: l.lon,
  radiusM: l.radiusM,
});

const deliveryView = (
  d: Omit<DeliveryViewModel, 'timeline'> & { timeline?: DeliveryViewModel['timeline'] },
) => ({
  id: d.id,
  vin: d.vin,
  locationId: d.locationId,
  driverId: d.driverId,
  packageIds: d.packageIds,
  window: { start: iso(d.windowStart), end: iso(d.windowEnd) },
  status: d.status,
  unlocksUsed: d.unlocksUsed,
  blocked: d.blocked,
  parking: d.parking
    ? {
        confirmedAt: iso(d.parking.confirmedAt),
        position: d.parking.position,
        invalidCode: d.parking.invalidCode,
      }
    : null,
  unlockedAt: d.unlockedAt === null ? null : iso(d.unlockedAt),
  relockedAt: d.relockedAt === null ? null : iso(d.relockedAt),
  carrierId: d.carrierId ?? null,
  ...(d.timeline ? { timeline: d.timeline.map((e) => ({ ...e, at: iso(e.at) })) } : {}),
});

const PUBLIC_ROUTES = new Set(['/healthz', '/readyz', '/metrics', OPENAPI_PATH, ...CONSOLE_PUBLIC_ROUTES]);

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit ?? 64 * 1024,
    requestTimeout: deps.requestTimeoutMs ?? 30_000,
    connectionTimeout: deps.connectionTimeoutMs ?? 60_000,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
    // The same name as in problem bodies, so a log search by the id a caller reports finds the request.
    logController: new LogController({ requestIdLogLabel: 'requestId' }),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  registerProblemHandlers(app);
  if (deps.operations) registerOperations(app, deps.operations);
  registerAuth(app, deps.db, PUBLIC_ROUTES);
  // Route-level onRequest hooks run after the global ones, so the key is known here: one budget per key.
  await app.register(rateLimit, {
    max: deps.perKeyPerMinute ?? 600,
    timeWindow: 60_000,
    ...(deps.rateLimitStore ? { store: deps.rateLimitStore } : {}),
    hook: 'onRequest',
    keyGenerator: (req) => req.apiKeyId ?? `ip:${req.ip}`,
    allowList: (req) => req.routeOptions.url !== undefined && PUBLIC_ROUTES.has(req.routeOptions.url),
    errorResponseBuilder: (_req, ctx) =>
      new ApiError('RATE_LIMITED', {
        retryAfterS: Math.max(1, Math.ceil(ctx.ttl / 1000)),
        detail: `at most ${ctx.max} requests a minute per API key; retry in ${ctx.after}`,
      }),
  });
  registerScopeCheck(app);
  registerAccessCheck(app, deps.db);
  const now = deps.now ?? Date.now;
  const secrets = deps.webhookSecrets ?? createSecretBox(randomBytes(32));
  registerIdempotency(app, {
    db: deps.db,
    now,
    policy: { ...DEFAULT_IDEMPOTENCY_POLICY, ...deps.idempotency },
    box: secrets,
    ...(deps.idempotencyScope ? { scope: deps.idempotencyScope } : {}),
    ...(deps.idempotencyScope && deps.keyUseWrite ? { keyUseWrite: deps.keyUseWrite } : {}),
  });
  await registerOpenApi(app, PUBLIC_ROUTES);
  if (deps.audit) {
    registerAuditApi(
      app,
      deps.audit,
      deps.idempotencyScope && deps.keyUseWrite ? deps.idempotencyScope : undefined,
    );
  }

  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get('/healthz', async () => ({ status: 'ok' }));

  r.post(
    '/v1/vehicles',
    { config: { scopes: ['vehicles'] }, schema: { body: LinkVehicleBody, response: { 201: VehicleView } } },
    async (req, reply) => {
      const v = await deps.vehicles.link(req.body);
      return reply.code(201).send(vehicleView(v));
    },
  );
  r.get('/v1/vehicles', { config: { scopes: ['vehicles'] } }, async (req) => ({
    vehicles: (await deps.vehicles.list())
      .filter((v) => canSeeOwner(callerOf(req), v.ownerId))
      .map(vehicleView),
  }));
  r.get(
    '/v1/vehicles/:vin',
    {
      config: { scopes: ['vehicles'], resource: 'vehicle' },
      schema: { params: VinParams, response: { 200: VehicleView } },
    },
    async (req) => vehicleView(await deps.vehicles.get(req.params.vin)),
  );
  // Unlinking revokes everything in flight: see ControlService.unlink.
  r.delete(
    '/v1/vehicles/:vin',
    {
      config: { scopes: ['vehicles'], resource: 'vehicle' },
      schema: { params: VinParams, response: { 200: UnlinkView } },
    },
    async (req) => ({
      ...(await deps.control.unlink(req.params.vin)),
      unlinked: true as const,
    }),
  );
  r.post(
    '/v1/vehicles/:vin/block',
    {
      config: { scopes: ['blocking'], resource: 'vehicle' },
      schema: { params: VinParams, body: ReasonBody, response: { 200: VehicleBlockView } },
    },
    async (req) => deps.control.blockVehicle(req.params.vin, req.body?.reason),
  );
  r.post(
    '/v1/vehicles/:vin/unblock',
    {
      config: { scopes: ['blocking'], resource: 'vehicle' },
      schema: { params: VinParams, body: EmptyBody, response: { 200: VehicleBlockView } },
    },
    async (req) => deps.control.unblockVehicle(req.params.vin),
  );

  r.post(
    '/v1/locations',
    {
      config: { scopes: ['locations'] },
      schema: { body: CreateLocationBody, response: { 201: LocationView } },
    },
    async (req, reply) => {
      const l = await deps.vehicles.addLocation(req.body);
      return reply.code(201).send(locationView(l));
    },
  );

  r.post(
    '/v1/deliveries',
    {
      config: { scopes: ['deliveries'] },
      schema: { body: CreateDeliveryBody, response: { 201: DeliveryView } },
    },
    async (req, reply) => {
      const { window, carrierId, ...rest } = req.body;
      const d = await deps.deliveries.schedule({
        ...rest,
        window: {
          start: Date.parse(window.start),
          ...(window.end === undefined ? {} : { end: Date.parse(window.end) }),
        },
        carrierId: carrierForNewDelivery(callerOf(req), carrierId),
      });
      return reply.code(201).send(deliveryView(d));
    },
  );
  r.get(
    '/v1/deliveries/:id',
    {
      config: { scopes: ['deliveries', 'timelines:read'], resource: 'delivery' },
      schema: { params: IdParams, response: { 200: DeliveryView } },
    },
    async (req) => deliveryView(await deps.deliveries.view(req.params.id)),
  );
  const command = { scopes: ['commands'], resource: 'delivery', command: true } as const;
  r.post(
    '/v1/deliveries/:id/unlock',
    { config: command, schema: { params: IdParams, body: UnlockBody } },
    async (req) => deps.deliveries.unlock(req.params.id, req.body),
  );
  r.post(
    '/v1/deliveries/:id/lock',
    { config: command, schema: { params: IdParams, body: LockBody } },
    async (req) => deps.deliveries.lock(req.params.id, req.body),
  );
  r.post(
    '/v1/deliveries/:id/parking',
    {
      config: { scopes: ['parking'], resource: 'delivery' },
      schema: { params: IdParams, body: EmptyBody, response: { 200: ParkingView } },
    },
    async (req) => deps.deliveries.confirmParking(req.params.id),
  );
  r.post(
    '/v1/deliveries/:id/block',
    {
      config: { scopes: ['blocking'], resource: 'delivery' },
      schema: { params: IdParams, body: ReasonBody, response: { 200: DeliveryBlockView } },
    },
    async (req) => deps.control.blockDelivery(req.params.id, req.body?.reason),
  );
  r.post(
    '/v1/deliveries/:id/unblock',
    {
      config: { scopes: ['blocking'], resource: 'delivery' },
      schema: { params: IdParams, body: EmptyBody, response: { 200: DeliveryBlockView } },
    },
    async (req) => deps.control.unblockDelivery(req.params.id),
  );
  r.post(
    '/v1/deliveries/:id/cancel',
    {
      config: { scopes: ['deliveries', 'blocking'], resource: 'delivery' },
      schema: { params: IdParams, body: ReasonBody, response: { 200: CancelView } },
    },
    async (req) => deps.control.cancel(req.params.id, req.body?.reason),
  );
  // Every other action on a delivery (remote start, horn, trunk…): the owner consented to unlock and lock
  // only, so this is refused with ACTION_NOT_CONSENTED. Static routes above take precedence over it.
  r.post('/v1/deliveries/:id/:action', { config: command, schema: { params: ActionParams } }, async (req) =>
    deps.deliveries.requestAction(req.params.id, req.params.action),
  );

  registerWebhookRoutes(app, {
    db: deps.db,
    secrets,
    destinations: deps.webhookDestinations ?? createWebhookDestinations({ requireHttps: true }),
    now,
    newId: deps.newId ?? (() => randomUUID().replaceAll('-', '')),
  });
  if (deps.console) registerConsole(app, { db: deps.db, ...deps.console });

  await app.ready();
  return app;
}

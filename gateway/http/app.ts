// Owns the HTTP API: buildApp(deps) returns a Fastify instance with every route, without listening.
import { randomBytes, randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { DeliveryService, DeliveryView as DeliveryViewModel } from '../deliveries.ts';
import { DEFAULT_IDEMPOTENCY_POLICY, type IdempotencyPolicy } from '../idempotency.ts';
import type { LocationRecord, VehicleRecord } from '../store/records.ts';
import type { Database } from '../store/schema.ts';
import type { VehicleService } from '../vehicles.ts';
import { createSecretBox, type SecretBox } from '../webhooks/secret-box.ts';
import { callerOf, canSeeOwner, carrierForNewDelivery, registerAccessCheck } from './access.ts';
import { registerAuth } from './auth.ts';
import { registerIdempotency } from './idempotency.ts';
import { OPENAPI_PATH, registerOpenApi } from './openapi.ts';
import { registerProblemHandlers } from './problem.ts';
import { registerWebhookRoutes } from './routes-webhooks.ts';
import {
  CreateDeliveryBody,
  CreateLocationBody,
  DeliveryView,
  IdParams,
  LinkVehicleBody,
  LocationView,
  LockBody,
  UnlockBody,
  VehicleView,
  VinParams,
} from './schemas.ts';
import { registerScopeCheck } from './scopes.ts';

export interface AppDeps {
  db: Kysely<Database>;
  vehicles: VehicleService;
  deliveries: DeliveryService;
  logger: Logger;
  bodyLimit?: number;
  /** Seals webhook secrets; the dispatcher must open them with the same key (an ephemeral one otherwise). */
  webhookSecrets?: SecretBox;
  idempotency?: Partial<IdempotencyPolicy>;
  now?: () => number;
  newId?: () => string;
}

const iso = (ms: number): string => new Date(ms).toISOString();

const vehicleView = (v: VehicleRecord) => ({
  vin: v.vin,
  make: v.make,
  model: v.model,
  year: v.year,
  provider: v.provider,
  ownerId: v.ownerId,
  consent: v.consent,
  online: v.online,
  locked: v.locked,
  position: v.position,
  lastSeen: v.lastSeen === null ? null : iso(v.lastSeen),
});

const locationView = (l: LocationRecord) => ({
  id: l.id,
  ownerId: l.ownerId,
  label: l.label,
  kind: l.kind,
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
  carrierId: d.carrierId ?? null,
  ...(d.timeline ? { timeline: d.timeline.map((e) => ({ ...e, at: iso(e.at) })) } : {}),
});

const PUBLIC_ROUTES = new Set(['/healthz', OPENAPI_PATH]);

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit ?? 64 * 1024,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  registerProblemHandlers(app);
  registerAuth(app, deps.db, PUBLIC_ROUTES);
  registerScopeCheck(app);
  registerAccessCheck(app, deps.db);
  const now = deps.now ?? Date.now;
  const secrets = deps.webhookSecrets ?? createSecretBox(randomBytes(32));
  registerIdempotency(app, {
    db: deps.db,
    now,
    policy: { ...DEFAULT_IDEMPOTENCY_POLICY, ...deps.idempotency },
    box: secrets,
  });
  await registerOpenApi(app, PUBLIC_ROUTES);

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
        window: { start: Date.parse(window.start), end: Date.parse(window.end) },
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

  registerWebhookRoutes(app, {
    db: deps.db,
    secrets,
    now,
    newId: deps.newId ?? (() => randomUUID().replaceAll('-', '')),
  });

  await app.ready();
  return app;
}

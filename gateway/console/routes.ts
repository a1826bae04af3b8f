// Owns the console's routes: the page, the lists it loads, its live stream and the simulator actions, each behind
// the same bearer key, scopes and object-level checks as the rest of the API.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import { hasScope, SCOPES } from '../access/api-keys.ts';
import { callerOf } from '../access/ownership.ts';
import { VinParams } from '../http/schemas.ts';
import type { Database } from '../store/schema.ts';
import { type Assets, createAssets, PAGE_HEADERS } from './assets.ts';
import type { ConsoleHub } from './hub.ts';
import {
  listConsoleDeliveries,
  listConsoleLocations,
  listConsoleVehicles,
  listConsoleWebhookDeliveries,
  publicDelivery,
  publicVehicle,
  publicWebhookDelivery,
} from './read-model.ts';
import {
  ConsoleDeliveryList,
  ConsoleMe,
  ConsoleVehicleList,
  ConsoleWebhookDeliveryList,
  ListQuery,
  SimulatedCarView,
  SimulatorAction,
  SimulatorActionView,
} from './schemas.ts';
import type { SimulatorControl } from './simulator.ts';
import { openStream, type StreamDeps } from './stream.ts';
import {
  DELIVERY_SCOPES,
  seesDelivery,
  seesLocation,
  seesVehicle,
  seesWebhookDelivery,
  VEHICLE_SCOPES,
  WEBHOOK_SCOPES,
} from './visibility.ts';

export const CONSOLE_PATH = '/console';
/** The page and its files: public, since they hold no data (every list and the stream need a key). */
export const CONSOLE_PUBLIC_ROUTES = [CONSOLE_PATH, `${CONSOLE_PATH}/:asset`] as const;

export interface ConsoleDeps {
  db: Kysely<Database>;
  hub: ConsoleHub;
  /** The simulator's control API, or `noSimulator` (every action: 501 SIMULATOR_NOT_CONFIGURED). */
  simulator: SimulatorControl;
  /** True when a simulator is configured, so the page offers its controls. */
  simulatorConfigured: boolean;
  assets?: Assets;
  stream?: Pick<StreamDeps, 'heartbeatMs' | 'maxBufferedBytes'>;
}

const AssetParams = z.strictObject({ asset: z.string().max(64) });

/**
 * Registered on the root instance (not encapsulated): its onResponse hook must see every route, because a request
 * that changed a vehicle or a delivery is one of the changes the live stream reports.
 */
export function registerConsole(app: FastifyInstance, deps: ConsoleDeps): void {
  const { db, hub } = deps;
  const assets = deps.assets ?? createAssets();
  const r = app.withTypeProvider<ZodTypeProvider>();
  const hidden = { schema: { hide: true } };

  r.get(CONSOLE_PATH, hidden, async (_req, reply) => {
    const page = await assets.get('index.html');
    return reply.headers(PAGE_HEADERS).type(page.type).send(page.body);
  });
  r.get(`${CONSOLE_PATH}/:asset`, { schema: { hide: true, params: AssetParams } }, async (req, reply) => {
    const file = await assets.get(req.params.asset);
    return reply.headers(PAGE_HEADERS).type(file.type).send(file.body);
  });

  r.get(
    '/v1/console/me',
    {
      config: { scopes: SCOPES },
      schema: {
        description: 'The signed-in key: its scopes, binding, and what the console shows it.',
        response: { 200: ConsoleMe },
      },
    },
    async (req) => {
      const caller = callerOf(req);
      const vehicles = hasScope(caller, VEHICLE_SCOPES);
      return {
        keyId: caller.keyId,
        scopes: caller.scopes,
        ownerId: caller.ownerId,
        carrierId: caller.carrierId,
        sees: {
          vehicles,
          deliveries: hasScope(caller, DELIVERY_SCOPES),
          webhooks: hasScope(caller, WEBHOOK_SCOPES),
          simulator: vehicles && deps.simulatorConfigured,
        },
      };
    },
  );

  r.get(
    '/v1/console/vehicles',
    {
      config: { scopes: VEHICLE_SCOPES },
      // Ten thousand cars are a few MB: the schema documents the answer, and the reply is built only from
      // typed rows, so it is serialised without validating each car again (which took longer than the query).
      serializerCompiler: () => (data) => JSON.stringify(data),
      schema: {
        description: 'Linked vehicles this key sees, with the locations of their owners.',
        response: { 200: ConsoleVehicleList },
      },
    },
    async (req) => {
      const caller = callerOf(req);
      const [vehicles, locations] = [
        await listConsoleVehicles(db, caller),
        await listConsoleLocations(db, caller),
      ];
      return {
        vehicles: vehicles.filter((v) => seesVehicle(caller, v)).map(publicVehicle),
        locations: locations.filter((l) => seesLocation(caller, l)),
      };
    },
  );

  r.get(
    '/v1/console/deliveries',
    {
      config: { scopes: DELIVERY_SCOPES },
      schema: {
        description: 'The most recent deliveries this key sees, newest first, each with its timeline.',
        querystring: ListQuery,
        response: { 200: ConsoleDeliveryList },
      },
    },
    async (req) => {
      const caller = callerOf(req);
      const rows = await listConsoleDeliveries(db, caller, req.query.limit);
      return { deliveries: rows.filter((d) => seesDelivery(caller, d)).map(publicDelivery) };
    },
  );

  r.get(
    '/v1/console/webhook-deliveries',
    {
      config: { scopes: WEBHOOK_SCOPES },
      schema: {
        description:
          "The most recent webhook deliveries of this key's subscriptions: status, attempts, last error.",
        querystring: ListQuery,
        response: { 200: ConsoleWebhookDeliveryList },
      },
    },
    async (req) => {
      const caller = callerOf(req);
      const rows = await listConsoleWebhookDeliveries(db, caller, req.query.limit);
      return {
        webhookDeliveries: rows.filter((w) => seesWebhookDelivery(caller, w)).map(publicWebhookDelivery),
      };
    },
  );

  r.get(
    '/v1/console/events',
    {
      config: { scopes: SCOPES },
      schema: {
        description:
          'Server-Sent Events: `vehicle`, `vehicleRemoved`, `delivery` and `webhookDelivery` frames of the records ' +
          'this key sees (as in the lists), after a `ready` frame; an `end` frame says why the stream ends. ' +
          'Read it with fetch() and the Authorization header; the key never goes in a URL.',
      },
    },
    async (req, reply) => openStream(reply, callerOf(req), { db, hub, ...deps.stream }),
  );

  // Driving a simulated car: its owner's key or an admin key (scope `vehicles`, and the vehicle check).
  const driving = { scopes: VEHICLE_SCOPES, resource: 'vehicle' } as const;
  r.get(
    '/v1/console/vehicles/:vin/simulator',
    {
      config: driving,
      schema: {
        description: "The simulator's view of the car: link mode, battery, the car's clock, doors.",
        params: VinParams,
        response: { 200: SimulatedCarView },
      },
    },
    async (req) => deps.simulator.car(req.params.vin),
  );
  r.post(
    '/v1/console/vehicles/:vin/simulator',
    {
      config: driving,
      schema: {
        description:
          "Acts on the simulated car through the simulator's control API: a door, the trunk, the ignition, " +
          'its position, its link (online, asleep, offline, no_signal), its clock, its 12 V battery, a report now.',
        params: VinParams,
        body: SimulatorAction,
        response: { 200: SimulatorActionView },
      },
    },
    async (req) => ({
      vin: req.params.vin,
      op: req.body.op,
      car: await deps.simulator.apply(req.params.vin, req.body),
    }),
  );

  app.addHook('onResponse', async (req, reply) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return;
    // Refused before anything was read (no key, a hidden record) or failed: nothing changed that the feed shows.
    if (reply.statusCode === 401 || reply.statusCode === 404 || reply.statusCode >= 500) return;
    const resource = req.routeOptions.config?.resource;
    const params = (req.params ?? {}) as Record<string, unknown>;
    if (resource === 'delivery' && typeof params.id === 'string') hub.deliveryChanged(params.id);
    if (resource === 'vehicle' && typeof params.vin === 'string') hub.vehicleChanged(params.vin);
    const body = req.body as { vin?: unknown; ownerId?: unknown } | undefined;
    if (reply.statusCode !== 201) return;
    if (req.routeOptions.url === '/v1/vehicles' && typeof body?.vin === 'string')
      hub.vehicleChanged(body.vin);
    if (req.routeOptions.url === '/v1/locations' && typeof body?.ownerId === 'string')
      hub.locationsChanged(body.ownerId);
  });
  // A gateway that listens will be visited: its page is built now rather than on the first visit. (Tests that only
  // inject requests never start esbuild.)
  app.addHook('onListen', (done) => {
    void assets.warm();
    done();
  });
  app.addHook('preClose', (done) => {
    hub.close();
    done();
  });
}

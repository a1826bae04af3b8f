// Owns the console API's zod schemas: what the page lists and receives live, and the simulator actions it sends.
// The page type-checks against these without Node's types, so this file imports zod only; its copies of the wire's
// position and doors are held equal to protocols/messages.ts by simulator.ts, which fails to compile otherwise.
import { z } from 'zod';

export const PositionSchema = z.object({
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
});
export const DOORS = ['driver', 'passenger', 'rearLeft', 'rearRight'] as const;
const Latch = z.enum(['open', 'closed']);
export const DoorsSchema = z.object({ driver: Latch, passenger: Latch, rearLeft: Latch, rearRight: Latch });

const Time = z.string().describe('ISO 8601');

export const ConsoleVehicle = z.object({
  vin: z.string(),
  make: z.string(),
  model: z.string(),
  year: z.number(),
  provider: z.string(),
  ownerId: z.string(),
  blocked: z.boolean(),
  online: z.boolean(),
  locked: z.boolean().nullable(),
  /** Any door or the trunk open, as the car last reported. */
  doorsOpen: z.boolean().nullable(),
  ignition: z.string().nullable(),
  position: PositionSchema.nullable(),
  lastSeen: Time.nullable(),
});
export type ConsoleVehicle = z.infer<typeof ConsoleVehicle>;

export const ConsoleLocation = z.object({
  id: z.string(),
  ownerId: z.string(),
  label: z.string(),
  lat: z.number(),
  lon: z.number(),
  radiusM: z.number(),
});
export type ConsoleLocation = z.infer<typeof ConsoleLocation>;

export const ConsoleTimelineEntry = z.object({
  seq: z.number(),
  at: Time,
  kind: z.string(),
  outcome: z.enum(['granted', 'denied', 'info']),
  code: z.string().nullable(),
});
export type ConsoleTimelineEntry = z.infer<typeof ConsoleTimelineEntry>;

export const ConsoleDelivery = z.object({
  id: z.string(),
  vin: z.string(),
  carrierId: z.string().nullable(),
  driverId: z.string(),
  status: z.string(),
  blocked: z.boolean(),
  window: z.object({ start: Time, end: Time }),
  createdAt: Time,
  updatedAt: Time,
  location: ConsoleLocation.omit({ ownerId: true }).nullable(),
  timeline: z.array(ConsoleTimelineEntry),
});
export type ConsoleDelivery = z.infer<typeof ConsoleDelivery>;

export const ConsoleWebhookDelivery = z.object({
  id: z.string(),
  eventId: z.string(),
  eventType: z.string(),
  webhookId: z.string(),
  /** Scheme, host and port only: a receiver's path or query may hold a token of its own. */
  origin: z.string(),
  deliveryId: z.string().nullable(),
  vin: z.string().nullable(),
  status: z.enum(['pending', 'delivered', 'dead']),
  attempts: z.number(),
  lastError: z.string().nullable(),
  nextAttemptAt: Time,
  createdAt: Time,
  deliveredAt: Time.nullable(),
});
export type ConsoleWebhookDelivery = z.infer<typeof ConsoleWebhookDelivery>;

export const ConsoleMe = z.object({
  keyId: z.string(),
  scopes: z.array(z.string()),
  ownerId: z.string().nullable(),
  carrierId: z.string().nullable(),
  /** Which lists this key may read (the same scopes as the routes that serve them) and whether it may drive cars. */
  sees: z.object({
    vehicles: z.boolean(),
    deliveries: z.boolean(),
    webhooks: z.boolean(),
    simulator: z.boolean(),
  }),
});
export type ConsoleMe = z.infer<typeof ConsoleMe>;

export const ConsoleVehicleList = z.object({
  vehicles: z.array(ConsoleVehicle),
  locations: z.array(ConsoleLocation),
});
export const ConsoleDeliveryList = z.object({ deliveries: z.array(ConsoleDelivery) });
export const ConsoleWebhookDeliveryList = z.object({ webhookDeliveries: z.array(ConsoleWebhookDelivery) });

export const ListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});

/** What the console may ask of a simulated car: the simulator's own operations minus fault plans and reboots. */
export const SimulatorAction = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('door'), door: z.enum(DOORS), to: Latch }),
  z.strictObject({ op: z.literal('trunk'), to: Latch }),
  z.strictObject({ op: z.literal('ignition'), to: z.enum(['on', 'off']) }),
  z.strictObject({ op: z.literal('move'), ...PositionSchema.shape }),
  z.strictObject({ op: z.literal('link'), mode: z.enum(['online', 'asleep', 'offline', 'no_signal']) }),
  z
    .strictObject({
      op: z.literal('clock'),
      jumpMs: z.number().int().min(-86_400_000).max(86_400_000).optional(),
      driftPpm: z.number().min(-500_000).max(500_000).optional(),
    })
    .refine((c) => c.jumpMs !== undefined || c.driftPpm !== undefined, 'give jumpMs or driftPpm'),
  z.strictObject({ op: z.literal('battery'), level: z.enum(['ok', 'low']) }),
  z.strictObject({ op: z.literal('report') }),
]);
export type SimulatorAction = z.infer<typeof SimulatorAction>;

/** The simulator's own view of one car: what the gateway cannot know (link mode, battery, the car's clock). */
export const SimulatedCarView = z.object({
  vin: z.string(),
  connected: z.boolean(),
  state: z.object({
    locked: z.boolean(),
    doors: DoorsSchema,
    trunk: Latch,
    ignition: z.enum(['on', 'off']),
    position: PositionSchema,
  }),
  faults: z
    .object({
      link: z.string(),
      battery: z.string(),
      clock: z.object({ known: z.boolean(), offsetMs: z.number(), driftPpm: z.number() }),
    })
    .nullable(),
});
export type SimulatedCarView = z.infer<typeof SimulatedCarView>;

export const SimulatorActionView = z.object({ vin: z.string(), op: z.string(), car: SimulatedCarView });

export const StreamFrames = {
  vehicle: ConsoleVehicle,
  vehicleRemoved: z.object({ vin: z.string() }),
  location: ConsoleLocation,
  delivery: ConsoleDelivery,
  webhookDelivery: ConsoleWebhookDelivery,
} as const;
export type StreamFrameType = keyof typeof StreamFrames | 'ready' | 'end';

// Owns the HTTP API's zod schemas: request validation, response serialization and (later) OpenAPI come from them.
import { z } from 'zod';
import { PositionSchema } from '../../protocols/index.ts';
import { RESOLUTIONS } from '../errors.ts';
import { DELIVERY_STATUSES } from '../store/deliveries.ts';

const Id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/);
const Time = z.iso.datetime({ offset: true });

export const LinkVehicleBody = z.strictObject({
  // Syntax is checked by the service so each VIN problem gets its own code.
  vin: z.string().min(1).max(32),
  make: z.string().min(1).max(64),
  model: z.string().min(1).max(64),
  year: z.number().int().min(1980).max(2100),
  provider: z.string().min(1).max(32),
  ownerId: Id,
  // Required, like VIN syntax checked by the service: missing, or anything but exactly unlock and lock, is
  // 422 CONSENT_INVALID (one code for every consent problem) rather than a generic 400.
  consent: z
    .array(z.string().min(1).max(32))
    .max(8)
    .optional()
    .describe(
      'Required: exactly ["unlock", "lock"], in any order; missing or anything else is 422 CONSENT_INVALID',
    ),
});

export const VehicleView = z.object({
  vin: z.string(),
  make: z.string(),
  model: z.string(),
  year: z.number(),
  provider: z.string(),
  ownerId: z.string(),
  consent: z.array(z.string()),
  blocked: z.boolean(),
  /** False for a revoked car, whatever it reported last. */
  online: z.boolean(),
  /** Its certificate is on the CA's revocation list: the broker refuses it and the gateway sends it nothing. */
  revoked: z.boolean(),
  locked: z.boolean().nullable(),
  ignition: z.enum(['on', 'off']).nullable(),
  position: PositionSchema.nullable(),
  lastSeen: z.string().nullable(),
});

export const VinParams = z.strictObject({ vin: z.string().min(1).max(32) });
export const IdParams = z.strictObject({ id: Id });
export const ActionParams = z.strictObject({ id: Id, action: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/) });

/** Block and cancel may say why; the reason goes on the timeline. */
export const ReasonBody = z.strictObject({ reason: z.string().min(1).max(200).optional() }).nullish();
/** Requests that take nothing: no body, or an empty object. */
export const EmptyBody = z.strictObject({}).nullish();

export const UnlinkView = z.object({
  vin: z.string(),
  unlinked: z.literal(true),
  cancelled: z.array(z.string()),
  lockUnconfirmed: z.array(z.string()),
});
const RelockOutcome = z.enum(['locked', 'unconfirmed', 'not_open', 'skipped']);
export const DeliveryBlockView = z.object({ id: z.string(), blocked: z.boolean(), relocked: RelockOutcome });
export const VehicleBlockView = z.object({
  vin: z.string(),
  blocked: z.boolean(),
  relocked: z.record(z.string(), RelockOutcome),
});
export const CancelView = z.object({
  id: z.string(),
  status: z.literal('cancelled'),
  relocked: RelockOutcome,
});
export const ParkingView = z.object({ status: z.literal('parking_confirmed'), distanceM: z.number() });

export const CreateLocationBody = z.strictObject({
  ownerId: Id,
  label: z.string().min(1).max(200),
  kind: z.enum(['home', 'workplace', 'store']).default('home'),
  // Required, not defaulted: whether a place is public is the owner's statement, never an assumption.
  access: z.enum(['public', 'garage', 'restricted']),
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
  radiusM: z.number().positive().max(100_000).default(200),
});

export const LocationView = z.object({
  id: z.string(),
  ownerId: z.string(),
  label: z.string(),
  kind: z.string(),
  access: z.string(),
  lat: z.number(),
  lon: z.number(),
  radiusM: z.number(),
});

export const CreateDeliveryBody = z.strictObject({
  vin: z.string().min(1).max(32),
  locationId: Id,
  driverId: Id,
  packageIds: z.array(Id).min(1).max(50),
  /** `end` defaults to start + DEFAULT_WINDOW_H (4 h). */
  window: z.strictObject({ start: Time, end: Time.optional() }),
  /** Only keys bound to no carrier may name one; a carrier's key schedules for its own carrier. */
  carrierId: Id.optional(),
});

export const UnlockBody = z.strictObject({
  driverId: Id,
  position: PositionSchema,
  packageId: Id,
});

export const LockBody = z.strictObject({ driverId: Id });

export const TimelineEntryView = z.object({
  seq: z.number(),
  at: z.string(),
  kind: z.string(),
  outcome: z.enum(['granted', 'denied', 'info']),
  code: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()),
});

export const DeliveryView = z.object({
  id: z.string(),
  vin: z.string(),
  locationId: z.string(),
  driverId: z.string(),
  packageIds: z.array(z.string()),
  window: z.object({ start: z.string(), end: z.string() }),
  status: z.enum(DELIVERY_STATUSES),
  unlocksUsed: z.number(),
  blocked: z.boolean(),
  parking: z
    .object({
      confirmedAt: z.string(),
      position: PositionSchema,
      /** Why the confirmation no longer holds (VEHICLE_MOVED, VEHICLE_NOT_PARKED); null while it does. */
      invalidCode: z.string().nullable(),
    })
    .nullable(),
  /** When the car acked the unlock, or when an unlock went unanswered (the car may be open). */
  unlockedAt: z.string().nullable(),
  relockedAt: z.string().nullable(),
  carrierId: z.string().nullable(),
  timeline: z.array(TimelineEntryView).optional(),
});

/** RFC 9457 problem document; codes may add members (issues, vehicleReason, requiredScopes). */
export const Problem = z.looseObject({
  type: z.string(),
  title: z.string(),
  status: z.number(),
  code: z.string(),
  detail: z.string().optional(),
  retryable: z.boolean(),
  resolution: z.enum(RESOLUTIONS),
  mayHaveSucceeded: z.boolean().optional(),
  requestId: z.string(),
});

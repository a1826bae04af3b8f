// Owns who sees which console record: the scopes of the existing routes that serve the same records, then the
// object-level checks of access/ownership.ts. The lists and the live stream both decide here, and only here.
import { type Caller, hasScope, type Scope } from '../access/api-keys.ts';
import { canSeeDelivery, canSeeOwner, canSeeWebhook } from '../access/ownership.ts';

/** As GET /v1/vehicles and /v1/vehicles/:vin. */
export const VEHICLE_SCOPES = ['vehicles'] as const satisfies readonly Scope[];
/** As GET /v1/deliveries/:id (its timeline). */
export const DELIVERY_SCOPES = ['deliveries', 'timelines:read'] as const satisfies readonly Scope[];
/** As GET /v1/webhooks. */
export const WEBHOOK_SCOPES = ['webhooks'] as const satisfies readonly Scope[];

export const seesVehicle = (caller: Caller, v: { ownerId: string }): boolean =>
  hasScope(caller, VEHICLE_SCOPES) && canSeeOwner(caller, v.ownerId);

/** `ownerId` is the owner of the delivery's vehicle. */
export const seesDelivery = (caller: Caller, d: { carrierId: string | null; ownerId: string }): boolean =>
  hasScope(caller, DELIVERY_SCOPES) && canSeeDelivery(caller, d, d.ownerId);

export const seesWebhookDelivery = (
  caller: Caller,
  w: { subscriber: { ownerId: string | null; carrierId: string | null } },
): boolean => hasScope(caller, WEBHOOK_SCOPES) && canSeeWebhook(caller, w.subscriber);

/** Locations come with the vehicles (the map draws their radii): the same scope, the owner's own. */
export const seesLocation = (caller: Caller, l: { ownerId: string }): boolean =>
  hasScope(caller, VEHICLE_SCOPES) && canSeeOwner(caller, l.ownerId);

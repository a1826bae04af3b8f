// Owns object-level authorization (OWASP API1, BOLA): a key bound to an owner or carrier sees only its records.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { ApiError } from '../errors.ts';
import { findDelivery } from '../store/deliveries.ts';
import type { Database } from '../store/schema.ts';
import { findVehicle } from '../store/vehicles.ts';
import type { Caller } from './api-keys.ts';

/** Unbound keys (admin, an unbound reviewer) see everything; bound keys see only what names their id. */
export function canSeeDelivery(
  caller: Caller,
  delivery: { carrierId?: string | null },
  vehicleOwnerId: string | null,
): boolean {
  if (caller.carrierId !== null) return delivery.carrierId === caller.carrierId;
  if (caller.ownerId !== null) return vehicleOwnerId === caller.ownerId;
  return true;
}

export const canSeeOwner = (caller: Caller, ownerId: string): boolean =>
  caller.carrierId === null && (caller.ownerId === null || caller.ownerId === ownerId);

/** A webhook is its subscriber's: the owner's or the carrier's key sees it; an unbound key sees every one. */
export const canSeeWebhook = (
  caller: Caller,
  webhook: { ownerId: string | null; carrierId: string | null },
): boolean =>
  (caller.ownerId === null && caller.carrierId === null) ||
  (caller.ownerId !== null && webhook.ownerId === caller.ownerId) ||
  (caller.carrierId !== null && webhook.carrierId === caller.carrierId);

/** Another owner's or carrier's record answers exactly like a missing one, so ids cannot be probed. */
const hidden = (what: string): ApiError => new ApiError('NOT_FOUND', { detail: `no ${what}` });

export function callerOf(req: FastifyRequest): Caller {
  if (!req.caller) throw new ApiError('UNAUTHENTICATED');
  return req.caller;
}

/**
 * The carrier a new delivery belongs to: the key's own binding; only unbound keys may name one in the body
 * (and may leave it out: such a delivery has no carrier and only unbound keys see it).
 */
export function carrierForNewDelivery(caller: Caller, requested: string | undefined): string | null {
  if (caller.carrierId !== null) {
    if (requested !== undefined)
      throw new ApiError('FIELD_NOT_ALLOWED', {
        detail: 'carrierId comes from the API key bound to a carrier',
      });
    return caller.carrierId;
  }
  if (caller.ownerId !== null)
    throw new ApiError('FIELD_NOT_ALLOWED', { detail: 'an owner key cannot schedule' });
  return requested ?? null;
}

/** Deliveries whose binding (carrier and vehicle) the access check keeps in memory; the oldest go first. */
const DELIVERY_BINDINGS = 10_000;

interface DeliveryBinding {
  carrierId: string | null;
  vin: string;
}

/**
 * A delivery's carrier and vehicle, kept after the first read: both are fixed when the delivery is scheduled (no
 * write changes them, and no delivery is deleted), so what is kept can never go stale, on this replica or another.
 * Only the binding is kept: the decision behind the check reads the delivery afresh (its status, its blocks).
 */
function deliveryBindings(db: Kysely<Database>) {
  const known = new Map<string, DeliveryBinding>();
  return async (id: string): Promise<DeliveryBinding | null> => {
    const kept = known.get(id);
    if (kept) return kept;
    const d = await findDelivery(db, id);
    if (!d) return null;
    const binding = { carrierId: d.carrierId ?? null, vin: d.vin };
    if (known.size >= DELIVERY_BINDINGS) known.delete(known.keys().next().value as string);
    known.set(id, binding);
    return binding;
  };
}

/**
 * Route config `resource` names the record a route's params point at; the check runs after validation
 * (params are well-formed) and before the handler. Bodies naming an owner are checked the same way. A delivery's
 * carrier is read once (deliveryBindings); the vehicle's owner, which a relink may change, every time.
 */
export function registerAccessCheck(app: FastifyInstance, db: Kysely<Database>): void {
  const bindingOf = deliveryBindings(db);
  app.addHook('preHandler', async (req) => {
    const caller = req.caller;
    if (!caller) return;
    const resource = req.routeOptions.config?.resource;
    const params = (req.params ?? {}) as Record<string, unknown>;
    if (resource === 'delivery' && typeof params.id === 'string') {
      const d = await bindingOf(params.id);
      // Only an owner's key is checked against the vehicle's owner (canSeeDelivery).
      const ownerBound = caller.carrierId === null && caller.ownerId !== null;
      const owner = d && ownerBound ? ((await findVehicle(db, d.vin))?.ownerId ?? null) : null;
      if (!d || !canSeeDelivery(caller, d, owner)) throw hidden(`delivery ${params.id}`);
    }
    if (resource === 'vehicle' && typeof params.vin === 'string') {
      const v = await findVehicle(db, params.vin);
      if (!v || !canSeeOwner(caller, v.ownerId)) throw hidden(`linked vehicle ${params.vin}`);
    }
    const body = req.body as Record<string, unknown> | undefined;
    if (body && typeof body === 'object' && typeof body.ownerId === 'string') {
      if (!canSeeOwner(caller, body.ownerId)) throw hidden(`owner ${body.ownerId}`);
    }
  });
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The record the route's params name: `:id` of a delivery, or `:vin` of a linked vehicle. */
    resource?: 'delivery' | 'vehicle';
  }
}

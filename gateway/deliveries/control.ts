// Owns the owner's control over access: block and unblock a delivery or a vehicle, cancel a delivery, unlink
// a vehicle. Each withdraws access at the gateway first, then locks a car that may be open.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ApiError } from '../errors.ts';
import { type DeliveryRecord, deliveriesOf, openDeliveriesOf, updateDelivery } from '../store/deliveries.ts';
import type { Write } from '../store/group-commit.ts';
import type { Database } from '../store/schema.ts';
import { appendEvent } from '../store/timeline.ts';
import { findVehicle, updateVehicle, type VehicleRecord } from '../store/vehicles.ts';
import { carMayBeOpen } from './context.ts';
import type { RelockOutcome } from './relock.ts';
import type { DeliveryService } from './service.ts';

/**
 * Called once a delivery's access is revoked for good (cancelled, or its vehicle unlinked), after the car was
 * relocked. The car-side revocation (a signed revoke the car checks at PROTOCOL.md §4.3 step 17) plugs in
 * here; it must come after the relock, since a revoked delivery's lock token is refused too.
 */
export type OnDeliveryRevoked = (deliveryId: string) => Promise<void> | void;

export interface ControlServiceDeps {
  /** For reads. */
  db: Kysely<Database>;
  /**
   * Every write goes through here (store.write, wrapped by the request's scope): the owner's decision commits in
   * one unit with the request's key use and the mark of its Idempotency-Key, or not at all.
   */
  write: Write;
  deliveries: DeliveryService;
  now: () => number;
  logger: Logger;
  onDeliveryRevoked?: OnDeliveryRevoked;
}

// A relocked delivery is still active: its driver may unlock again, or lock to complete it.
const ACTIVE: DeliveryRecord['status'][] = ['scheduled', 'unlocked', 'relocked'];

export interface UnlinkResult {
  vin: string;
  cancelled: string[];
  /** Deliveries whose car could not be confirmed locked (vehicle.lock_unconfirmed was raised). */
  lockUnconfirmed: string[];
}

export function createControlService(deps: ControlServiceDeps) {
  const { db, write, deliveries, now, logger } = deps;

  const revoked = async (deliveryId: string): Promise<void> => {
    try {
      await deps.onDeliveryRevoked?.(deliveryId);
    } catch (err) {
      // Access is already withdrawn at the gateway; the car-side revoke is a second line, logged when it fails.
      logger.error({ err, event: 'delivery.revoke_failed', deliveryId }, 'onDeliveryRevoked failed');
    }
  };

  async function linkedVehicle(vin: string): Promise<VehicleRecord> {
    const v = await findVehicle(db, vin);
    if (!v || v.unlinkedAt !== null) throw new ApiError('NOT_FOUND', { detail: `no linked vehicle ${vin}` });
    return v;
  }

  /** A delivery that can still be acted on: active, or finished while its car may still be open. */
  async function actionable(id: string): Promise<DeliveryRecord> {
    const d = await deliveries.load(id);
    if (!ACTIVE.includes(d.status) && !carMayBeOpen(d)) {
      throw new ApiError('DELIVERY_NOT_ACTIVE', { detail: `delivery is ${d.status}` });
    }
    return d;
  }

  async function setDeliveryBlocked(id: string, blocked: boolean, reason: string | undefined) {
    const d = await actionable(id);
    const t = now();
    await write(async (trx) => {
      await updateDelivery(trx, d.id, { blocked, updatedAt: t });
      await appendEvent(trx, d.id, {
        at: t,
        kind: blocked ? 'access_blocked' : 'access_unblocked',
        outcome: 'info',
        code: null,
        detail: { by: 'owner', scope: 'delivery', ...(reason ? { reason } : {}) },
      });
    });
    const relocked: RelockOutcome = blocked ? await deliveries.relock(d.id, 'block') : 'not_open';
    return { id: d.id, blocked, relocked };
  }

  async function setVehicleBlocked(vin: string, blocked: boolean, reason: string | undefined) {
    const v = await linkedVehicle(vin);
    const t = now();
    const affected = await write(async (trx) => {
      await updateVehicle(trx, v.vin, { blocked });
      const active = await deliveriesOf(trx, v.vin, ACTIVE);
      for (const d of active) {
        await appendEvent(trx, d.id, {
          at: t,
          kind: blocked ? 'access_blocked' : 'access_unblocked',
          outcome: 'info',
          code: null,
          detail: { by: 'owner', scope: 'vehicle', ...(reason ? { reason } : {}) },
        });
      }
      return active;
    });
    const relocked: Record<string, RelockOutcome> = {};
    if (blocked) {
      for (const d of affected) relocked[d.id] = await deliveries.relock(d.id, 'block');
    }
    return { vin: v.vin, blocked, relocked };
  }

  /** Cancels at the gateway, locks a car that may be open, then revokes the delivery's tokens at the car. */
  async function cancel(id: string, reason: string | undefined) {
    const d = await deliveries.load(id);
    if (!ACTIVE.includes(d.status))
      throw new ApiError('DELIVERY_NOT_ACTIVE', { detail: `delivery is ${d.status}` });
    await cancelOne(d, { by: 'owner', reason: reason ?? 'cancelled' });
    const relocked = await deliveries.relock(d.id, 'cancel');
    await revoked(d.id);
    return { id: d.id, status: 'cancelled' as const, relocked };
  }

  async function cancelOne(d: DeliveryRecord, detail: { by: string; reason: string }): Promise<void> {
    const t = now();
    await write(async (trx) => {
      await updateDelivery(trx, d.id, { status: 'cancelled', updatedAt: t });
      await appendEvent(trx, d.id, {
        at: t,
        kind: 'delivery_cancelled',
        outcome: 'info',
        code: null,
        detail,
      });
      await deliveries.emit(trx, d, 'delivery.failed', detail, t);
    });
  }

  /**
   * Unlinks a vehicle: from this moment no delivery of it gets a token (the vehicle counts as not linked),
   * each active delivery is cancelled, a car that may be open is locked first, then the hook revokes.
   */
  async function unlink(vin: string): Promise<UnlinkResult> {
    const v = await linkedVehicle(vin);
    const t = now();
    await write((trx) => updateVehicle(trx, v.vin, { unlinkedAt: t }));
    const result: UnlinkResult = { vin: v.vin, cancelled: [], lockUnconfirmed: [] };
    for (const d of await deliveriesOf(db, v.vin, ACTIVE)) {
      await cancelOne(d, { by: 'owner', reason: 'VEHICLE_UNLINKED' });
      result.cancelled.push(d.id);
    }
    // Cancelled or not, any delivery whose car may still be open is locked before its tokens are revoked.
    for (const d of await openDeliveriesOf(db, v.vin)) {
      if ((await deliveries.relock(d.id, 'unlink')) === 'unconfirmed') result.lockUnconfirmed.push(d.id);
    }
    for (const id of result.cancelled) await revoked(id);
    logger.info(
      { event: 'vehicle.unlinked', vin: v.vin, cancelled: result.cancelled.length },
      'vehicle unlinked',
    );
    return result;
  }

  return {
    blockDelivery: (id: string, reason?: string) => setDeliveryBlocked(id, true, reason),
    unblockDelivery: (id: string) => setDeliveryBlocked(id, false, undefined),
    blockVehicle: (vin: string, reason?: string) => setVehicleBlocked(vin, true, reason),
    unblockVehicle: (vin: string) => setVehicleBlocked(vin, false, undefined),
    cancel,
    unlink,
  };
}

export type ControlService = ReturnType<typeof createControlService>;

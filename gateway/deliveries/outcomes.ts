// Owns what a car's confirmed action does to its delivery: opened, confirmed locked, relocked by itself; each with
// its timeline entry and domain event, in the caller's transaction. Shared by requests and the reconciler.

import { sql } from 'kysely';
import type { Db } from '../store/db.ts';
import type { DeliveryRecord } from '../store/deliveries.ts';
import { partiesOf } from '../store/parties.ts';
import { appendEvent } from '../store/timeline.ts';
import { type DomainEvent, type Notify, noopNotify } from './notifications.ts';

/** Who locked the car again after an unlock; each has its own timeline entry. */
export type RelockCause = 'driver' | 'watchdog' | 'block' | 'cancel' | 'unlink';
/** Also 'car' (its own report) and 'reconciled' (a lock whose ack was lost, settled afterwards, PROTOCOL.md §6.3). */
export type LockedBy = RelockCause | 'car' | 'reconciled';

type DeliveryRef = Pick<DeliveryRecord, 'id' | 'vin'>;

export interface DeliveryOutcomesDeps {
  now: () => number;
  /** Called in the transaction of each decision an owner or carrier hears about (gateway/deliveries/notifications.ts). */
  notify?: Notify;
}

export function createDeliveryOutcomes(deps: DeliveryOutcomesDeps) {
  const { now } = deps;
  const notify = deps.notify ?? noopNotify;

  async function emit(
    trx: Db,
    d: DeliveryRef,
    type: DomainEvent['type'],
    data: Record<string, unknown>,
    at = now(),
  ): Promise<void> {
    // Who hears of it, with their webhooks: one read per transaction (store/parties.ts).
    const parties = await partiesOf(trx, d.id, d.vin);
    await notify(trx, {
      type,
      deliveryId: d.id,
      vin: d.vin,
      ownerId: parties?.ownerId ?? '',
      ...(parties ? { carrierId: parties.carrierId } : {}),
      at,
      data,
    });
  }

  /**
   * The car opened for this delivery: the watchdog's clock starts (it counts the car as possibly open until it is
   * confirmed locked), and a scheduled or relocked delivery becomes unlocked. `carTime` is the car's time of the
   * unlock, from the ack the request waited for; null when the gateway learnt of it only afterwards, and then no
   * report of the car completes the delivery (a driver told nothing or 504 may not have delivered).
   */
  async function opened(
    trx: Db,
    d: DeliveryRef,
    detail: Record<string, unknown>,
    carTime: number | null,
  ): Promise<void> {
    const at = now();
    await appendEvent(trx, d.id, { at, kind: 'vehicle_unlocked', outcome: 'granted', code: null, detail });
    await trx
      .updateTable('deliveries')
      .set({
        updated_at: at,
        unlocked_at: at,
        unlocked_car_at: carTime,
        relocked_at: null,
        relock_retry_at: null,
        lock_unconfirmed_at: null,
        // A delivery cancelled (or completed) meanwhile keeps its status; its car is relocked by the watchdog.
        status: sql<string>`case when status in ('scheduled', 'relocked') then 'unlocked' else status end`,
      })
      .where('id', '=', d.id)
      .execute();
    await emit(trx, d, 'vehicle.unlocked', detail, at);
  }

  /**
   * Records that the car reported locked after the unlock, and completes an unlocked or relocked delivery. The
   * conditional update makes a second report a no-op; a driver's lock of a car already known locked (a relocked
   * delivery) is still recorded, and completes it. Returns whether anything changed.
   */
  async function confirmLocked(
    trx: Db,
    d: DeliveryRef,
    kind: string,
    by: LockedBy,
    detail: Record<string, unknown>,
  ): Promise<boolean> {
    const t = now();
    const first = await trx
      .updateTable('deliveries')
      .set({ relocked_at: t, relock_retry_at: null, updated_at: t })
      .where('id', '=', d.id)
      .where('relocked_at', 'is', null)
      .executeTakeFirst();
    const isFirst = Number(first.numUpdatedRows) === 1;
    if (!isFirst && by !== 'driver' && by !== 'reconciled') return false;
    await appendEvent(trx, d.id, { at: t, kind, outcome: 'granted', code: null, detail });
    if (isFirst) await emit(trx, d, 'vehicle.relocked', { by, ...detail }, t);
    const completed = await trx
      .updateTable('deliveries')
      .set({ status: 'completed', updated_at: t })
      .where('id', '=', d.id)
      .where('status', 'in', ['unlocked', 'relocked'])
      .executeTakeFirst();
    if (Number(completed.numUpdatedRows) === 1) {
      await appendEvent(trx, d.id, {
        at: t,
        kind: 'delivery_completed',
        outcome: 'info',
        code: null,
        detail: { by },
      });
      await emit(trx, d, 'delivery.completed', { by }, t);
    }
    return true;
  }

  /**
   * The car answered a fresh state query locked, with nothing of this delivery outstanding, while the delivery was
   * unlocked without a car time to place a report after: it locked itself (its fail-safe). The delivery becomes
   * relocked, not completed: the driver may unlock again (if unlocks are left) or lock to complete it. It counts as
   * confirmed locked, so the watchdog leaves it alone.
   */
  async function relockedByCar(trx: Db, d: DeliveryRef, detail: Record<string, unknown>): Promise<boolean> {
    const t = now();
    const moved = await trx
      .updateTable('deliveries')
      .set((eb) => ({
        status: 'relocked',
        relocked_at: eb.fn.coalesce('relocked_at', eb.val(t)),
        relock_retry_at: null,
        updated_at: t,
      }))
      .where('id', '=', d.id)
      .where('status', '=', 'unlocked')
      .executeTakeFirst();
    if (Number(moved.numUpdatedRows) !== 1) return false;
    await appendEvent(trx, d.id, { at: t, kind: 'vehicle_relocked', outcome: 'info', code: null, detail });
    await emit(trx, d, 'vehicle.relocked', { ...detail, by: 'car', status: 'relocked' }, t);
    return true;
  }

  return { emit, opened, confirmLocked, relockedByCar };
}

export type DeliveryOutcomes = ReturnType<typeof createDeliveryOutcomes>;

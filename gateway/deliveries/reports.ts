// Owns applying what a car reports to its deliveries: a parking confirmation the report contradicts is
// withdrawn, and a locked report after an opening confirms the relock.
import type { StateMessage } from '../../protocols/index.ts';
import { reportableDeliveriesOf, updateDelivery } from '../store/deliveries.ts';
import { appendEvent } from '../store/timeline.ts';
import type { DeliveryContext } from './context.ts';
import { distanceM } from './geo.ts';

export function createReportHandling(ctx: DeliveryContext) {
  const { db, write, policy, now, mutex, confirmLocked } = ctx;

  /**
   * Applies what a car reported to its deliveries: a parking confirmation the report contradicts is
   * withdrawn, and a locked report after an unlock confirms the relock (the car's own fail-safe, a key fob).
   * Deliveries with a command in flight are left to that command.
   */
  async function observe(vin: string, message: StateMessage): Promise<void> {
    if (message.type !== 'state') return;
    const t = now();
    const { scheduled, open } = await reportableDeliveriesOf(db, vin);
    for (const d of scheduled) {
      if (!d.parking || d.parking.invalidCode) continue;
      const moved = distanceM(message.position, d.parking.position);
      const code =
        moved > policy.parkingToleranceM
          ? 'VEHICLE_MOVED'
          : message.ignition !== 'off'
            ? 'VEHICLE_NOT_PARKED'
            : null;
      if (!code) continue;
      await write(async (trx) => {
        await updateDelivery(trx, d.id, { parking: { ...d.parking!, invalidCode: code }, updatedAt: t });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'parking_invalidated',
          outcome: 'denied',
          code,
          detail: { movedM: Math.round(moved), ignition: message.ignition, seq: message.seq },
        });
      });
    }
    if (!message.locked || message.at === null) return;
    for (const d of open) {
      // Only a report the car made after it opened for this delivery (its own clock) can say it locked again.
      if (mutex.held(d.id) || d.unlockedCarAt === null || message.at <= d.unlockedCarAt) continue;
      await write((trx) =>
        confirmLocked(trx, d, 'relocked_by_car', 'car', { carTime: message.at, seq: message.seq }),
      );
    }
  }

  return { observe };
}

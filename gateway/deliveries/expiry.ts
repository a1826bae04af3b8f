// Owns ending a delivery whose window passed before it was ever opened: expired, with its timeline entry and
// domain event, decided by a conditional update so a concurrent request or replica cannot open it meanwhile.
import { findDelivery } from '../store/deliveries.ts';
import { appendEvent } from '../store/timeline.ts';
import type { DeliveryContext } from './context.ts';

export function createExpiry(ctx: DeliveryContext) {
  const { write, now, mutex, emit } = ctx;

  /**
   * Expires a delivery if, as of `asOf` (the caller's clock: the watchdog's), its window has ended and it was never
   * opened: still scheduled, no unlock used or in flight, none that may have opened the car. A delivery that was
   * opened is the relock's business. Returns whether this call expired it; a second call, or one racing it, finds
   * the status changed and does nothing. Unlock tokens never outlive the window, so none is left to revoke.
   */
  async function expire(id: string, asOf: number): Promise<boolean> {
    // After any request in flight for this delivery in this process; the conditional update guards across replicas.
    return mutex.run(id, () =>
      write(async (trx) => {
        const t = now();
        const moved = await trx
          .updateTable('deliveries')
          .set({ status: 'expired', updated_at: t })
          .where('id', '=', id)
          .where('status', '=', 'scheduled')
          .where('window_end', '<=', asOf)
          .where('unlocks_used', '=', 0)
          .where('unlocked_at', 'is', null)
          .executeTakeFirst();
        if (Number(moved.numUpdatedRows) !== 1) return false;
        const d = await findDelivery(trx, id);
        if (!d) return false;
        const detail = { windowEnd: d.windowEnd };
        await appendEvent(trx, id, { at: t, kind: 'delivery_expired', outcome: 'info', code: null, detail });
        await emit(trx, d, 'delivery.expired', detail, t);
        return true;
      }),
    );
  }

  return { expire };
}

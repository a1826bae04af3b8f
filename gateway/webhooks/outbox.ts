// Owns turning a domain event into outbox rows, in the caller's transaction, one per matching subscription.

import type { Notify } from '../deliveries/notifications.ts';
import { knownWebhooks, rememberWebhooks } from '../store/parties.ts';
import type { WebhookPayload } from './events.ts';
import { insertOutbox, liveWebhooksOf, rowOfWebhook, webhookOfRow } from './store.ts';

export interface OutboxNotifyDeps {
  newId: () => string;
  /** Called with the rows written; the dispatcher (and the console) look once the transaction has committed. */
  onEnqueued?: (outboxIds: string[]) => void;
}

/**
 * The transactional outbox: rows are written with the decision they report, so either both are stored or
 * neither is, and a restart loses no notification. The event's carrier is the delivery's carrier.
 */
export function createOutboxNotify(deps: OutboxNotifyDeps): Notify {
  return async (db, event) => {
    let carrierId: string | null = event.carrierId ?? null;
    if (event.carrierId === undefined && event.deliveryId !== null) {
      const row = await db
        .selectFrom('deliveries')
        .select('carrier_id')
        .where('id', '=', event.deliveryId)
        .executeTakeFirst();
      carrierId = row?.carrier_id ?? null;
    }
    // The subscriptions of these parties, read once per transaction (with the parties: store/parties.ts).
    let live = knownWebhooks(db, event.ownerId, carrierId)?.map(webhookOfRow);
    if (!live) {
      live = await liveWebhooksOf(db, { ownerId: event.ownerId, carrierId });
      rememberWebhooks(db, event.ownerId, carrierId, live.map(rowOfWebhook));
    }
    const subscribers = live.filter((w) => w.events.includes(event.type));
    if (subscribers.length === 0) return;
    const eventId = `evt_${deps.newId()}`;
    const payload: WebhookPayload = {
      id: eventId,
      type: event.type,
      createdAt: new Date(event.at).toISOString(),
      deliveryId: event.deliveryId,
      vin: event.vin,
      ownerId: event.ownerId,
      data: event.data,
    };
    const body = JSON.stringify(payload);
    const ids: string[] = [];
    for (const w of subscribers) {
      const id = `out_${deps.newId()}`;
      ids.push(id);
      await insertOutbox(db, {
        id,
        eventId,
        webhookId: w.id,
        eventType: event.type,
        payload: body,
        at: event.at,
      });
    }
    deps.onEnqueued?.(ids);
  };
}

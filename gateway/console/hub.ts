// Owns the console's live feed: notes what changed (domain events, car reports, requests, webhook attempts),
// reads each changed record once after its transaction, and hands it to every stream whose key may see it.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Caller } from '../access/api-keys.ts';
import type { Notify } from '../deliveries/notifications.ts';
import type { Database } from '../store/schema.ts';
import {
  type DeliveryRow,
  publicDelivery,
  publicVehicle,
  publicWebhookDelivery,
  readDeliveries,
  readLocations,
  readVehicles,
  readWebhookDeliveries,
} from './read-model.ts';
import type { StreamFrameType } from './schemas.ts';
import { seesDelivery, seesLocation, seesVehicle, seesWebhookDelivery } from './visibility.ts';

/** One open stream: the key it was opened with, and where its frames go. */
export interface ConsoleSubscriber {
  caller: Caller;
  /** Writes one frame; false when the stream is gone or too far behind (the hub then drops it). */
  send(type: StreamFrameType, data: string): boolean;
  /** Ends the stream with a last `end` frame saying why. */
  end(code: 'SHUTTING_DOWN' | 'UNAUTHENTICATED' | 'TOO_SLOW'): void;
}

export interface ConsoleHubDeps {
  db: Kysely<Database>;
  /** Resolves once the transaction in flight has ended (store.write.settled); the feed reads after it. */
  settled?: () => Promise<void>;
  logger: Logger;
  /** Changes noted within this long are read together (default 25 ms). */
  flushDelayMs?: number;
  /** Open streams per API key (default 4) and in all (default 200). */
  maxStreamsPerKey?: number;
  maxStreams?: number;
}

export interface ConsoleHub {
  /**
   * Notes the event's delivery and vehicle. Called inside the decision's transaction, it only notes: the records
   * are read once that transaction has ended (deps.settled), that is after the commit (or the rollback, which then
   * shows nothing new). It never throws, so it cannot undo a decision.
   */
  notify: Notify;
  vehicleChanged(vin: string): void;
  deliveryChanged(id: string): void;
  /** An owner registered a location (the map draws its radius). */
  locationsChanged(ownerId: string): void;
  webhookDeliveriesChanged(outboxIds: readonly string[]): void;
  /** Null when the key or the gateway already has as many streams as allowed. */
  subscribe(subscriber: ConsoleSubscriber): (() => void) | null;
  /** Ends every stream (the gateway is closing). */
  close(): void;
}

/** A delivery's frame is sent again only when one of these moved. */
const signatureOf = (d: DeliveryRow): string =>
  `${d.status}|${d.updatedAt}|${d.blocked}|${d.timeline.at(-1)?.seq ?? 0}`;
const OPEN = new Set(['scheduled', 'unlocked', 'relocked']);
/** Open deliveries whose last frame is remembered; beyond it the memory starts again (at worst, a repeat). */
const MAX_REMEMBERED = 20_000;

export function createConsoleHub(deps: ConsoleHubDeps): ConsoleHub {
  const { db, logger } = deps;
  const delay = deps.flushDelayMs ?? 25;
  const perKey = deps.maxStreamsPerKey ?? 4;
  const total = deps.maxStreams ?? 200;
  const subscribers = new Set<ConsoleSubscriber>();
  const vins = new Set<string>();
  const deliveryIds = new Set<string>();
  const outboxIds = new Set<string>();
  const locationOwners = new Set<string>();
  const lastSent = new Map<string, string>();
  let timer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> | null = null;
  let closed = false;

  const schedule = (): void => {
    if (timer || flushing || closed) return;
    timer = setTimeout(() => {
      timer = null;
      flushing = flush()
        .catch((err: unknown) =>
          logger.error({ err, event: 'console.flush_failed' }, 'console feed not sent'),
        )
        .finally(() => {
          flushing = null;
          if (vins.size + deliveryIds.size + outboxIds.size + locationOwners.size > 0) schedule();
        });
    }, delay);
    timer.unref();
  };

  /** With nobody watching nothing is noted, so the feed costs nothing then. */
  const note = (set: Set<string>, ids: Iterable<string>): void => {
    if (subscribers.size === 0 || closed) return;
    for (const id of ids) set.add(id);
    schedule();
  };

  const take = (set: Set<string>): string[] => {
    const out = [...set];
    set.clear();
    return out;
  };

  const fanOut = (type: StreamFrameType, data: string, sees: (caller: Caller) => boolean): void => {
    for (const s of subscribers) if (sees(s.caller) && !s.send(type, data)) drop(s, 'TOO_SLOW');
  };

  async function flush(): Promise<void> {
    const changedVins = take(vins);
    const explicit = new Set(take(deliveryIds));
    const changedOutbox = take(outboxIds);
    const owners = take(locationOwners);
    if (subscribers.size === 0) return;
    await deps.settled?.();
    for (const l of await readLocations(db, owners)) {
      fanOut('location', JSON.stringify(l), (c) => seesLocation(c, l));
    }
    for (const v of await readVehicles(db, changedVins)) {
      const sees = (c: Caller) => seesVehicle(c, v);
      if (v.linked) fanOut('vehicle', JSON.stringify(publicVehicle(v)), sees);
      else fanOut('vehicleRemoved', JSON.stringify({ vin: v.vin }), sees);
    }
    // A car's report can change its open deliveries (a parking confirmation withdrawn, a relock): they are
    // read with it, and sent only when something in them moved.
    for (const d of await readDeliveries(db, { ids: [...explicit], openOfVins: changedVins })) {
      const signature = signatureOf(d);
      if (!explicit.has(d.id) && lastSent.get(d.id) === signature) continue;
      if (OPEN.has(d.status)) {
        if (lastSent.size >= MAX_REMEMBERED) lastSent.clear();
        lastSent.set(d.id, signature);
      } else {
        lastSent.delete(d.id);
      }
      fanOut('delivery', JSON.stringify(publicDelivery(d)), (c) => seesDelivery(c, d));
    }
    for (const w of await readWebhookDeliveries(db, changedOutbox)) {
      fanOut('webhookDelivery', JSON.stringify(publicWebhookDelivery(w)), (c) => seesWebhookDelivery(c, w));
    }
  }

  function drop(s: ConsoleSubscriber, code: Parameters<ConsoleSubscriber['end']>[0]): void {
    if (!subscribers.delete(s)) return;
    s.end(code);
  }

  return {
    notify: async (_trx, event) => {
      if (event.deliveryId !== null) note(deliveryIds, [event.deliveryId]);
      note(vins, [event.vin]);
    },
    vehicleChanged: (vin) => note(vins, [vin]),
    deliveryChanged: (id) => note(deliveryIds, [id]),
    locationsChanged: (ownerId) => note(locationOwners, [ownerId]),
    webhookDeliveriesChanged: (ids) => note(outboxIds, ids),
    subscribe(subscriber) {
      if (closed || subscribers.size >= total) return null;
      let ofKey = 0;
      for (const s of subscribers) if (s.caller.keyId === subscriber.caller.keyId) ofKey++;
      if (ofKey >= perKey) return null;
      subscribers.add(subscriber);
      return () => {
        subscribers.delete(subscriber);
      };
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = null;
      for (const s of [...subscribers]) drop(s, 'SHUTTING_DOWN');
    },
  };
}

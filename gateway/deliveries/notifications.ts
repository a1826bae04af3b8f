// Owns the domain events the services emit at each step, and the Notify interface that delivers them.
import type { Db } from '../store/db.ts';

export interface DomainEvent {
  type:
    | 'delivery.scheduled'
    | 'delivery.parking_confirmed'
    | 'vehicle.unlocked'
    | 'vehicle.relocked'
    | 'delivery.completed'
    | 'delivery.failed'
    | 'delivery.expired'
    | 'access.denied'
    | 'vehicle.lock_unconfirmed';
  deliveryId: string | null;
  vin: string;
  ownerId: string;
  /** The delivery's carrier, when the emitter read it already (null: none); undefined: not read. */
  carrierId?: string | null;
  at: number;
  data: Record<string, unknown>;
}

/** Called in the same transaction as the decision it reports, so an event exists exactly when the decision does. */
export type Notify = (db: Db, event: DomainEvent) => Promise<void>;

/** The default: events go nowhere until a sender is wired in. */
export const noopNotify: Notify = async () => {};

// Owns the domain-event contract: what the delivery service emits and the notify function it calls in its transactions.
import type { Db } from './store/records.ts';

export interface DomainEvent {
  type:
    | 'delivery.scheduled'
    | 'delivery.parking_confirmed'
    | 'vehicle.unlocked'
    | 'vehicle.relocked'
    | 'delivery.completed'
    | 'delivery.failed'
    | 'access.denied'
    | 'vehicle.lock_unconfirmed';
  deliveryId: string | null;
  vin: string;
  ownerId: string;
  at: number;
  data: Record<string, unknown>;
}

export type Notify = (db: Db, event: DomainEvent) => Promise<void>;

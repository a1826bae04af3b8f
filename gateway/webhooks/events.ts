// Owns the list of event types a webhook can subscribe to, kept in step with DomainEvent['type'].
import type { DomainEvent } from '../deliveries/notifications.ts';

export const EVENT_TYPES = [
  'delivery.scheduled',
  'delivery.parking_confirmed',
  'vehicle.unlocked',
  'vehicle.relocked',
  'delivery.completed',
  'delivery.failed',
  'delivery.expired',
  'access.denied',
  'vehicle.lock_unconfirmed',
] as const satisfies readonly DomainEvent['type'][];

export type EventType = (typeof EVENT_TYPES)[number];

// Fails to compile when DomainEvent gains a type this list lacks.
type Missing = Exclude<DomainEvent['type'], EventType>;
const complete: [Missing] extends [never] ? true : Missing = true;
void complete;

/** What a receiver gets: the event with an id to de-duplicate on and an ISO time. */
export interface WebhookPayload {
  id: string;
  type: EventType;
  createdAt: string;
  deliveryId: string | null;
  vin: string;
  ownerId: string;
  data: Record<string, unknown>;
}

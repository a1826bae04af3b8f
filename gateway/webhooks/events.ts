// Owns the list of event types a webhook can subscribe to, kept in step with DomainEvent['type'], and their payload.
import { z } from 'zod';
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

/** What a receiver gets: the event with an id to de-duplicate on and an ISO time. The outbox writes it. */
export const WebhookPayloadSchema = z.object({
  id: z
    .string()
    .describe('evt_…: one id per event, the same for every receiver and every retry; de-duplicate on it'),
  type: z.enum(EVENT_TYPES),
  createdAt: z.iso.datetime().describe('When the decision was made'),
  deliveryId: z.string().nullable(),
  vin: z.string(),
  ownerId: z.string(),
  data: z.record(z.string(), z.unknown()).describe('What the step reports (codes, positions, who relocked…)'),
});
export type WebhookPayload = z.infer<typeof WebhookPayloadSchema>;

/** The payload of one event type: the same envelope with its `type` fixed (OpenAPI's `webhooks` lists each). */
export const payloadSchemaOf = (type: EventType) => WebhookPayloadSchema.extend({ type: z.literal(type) });

/**
 * One line each for the API reference. Partial on purpose: an event added to EVENT_TYPES is documented (by its
 * name and payload) before anyone writes its line.
 */
export const EVENT_SUMMARIES: Partial<Record<EventType, string>> = {
  'delivery.scheduled': "A delivery was scheduled for one of the owner's cars",
  'delivery.parking_confirmed': "The car itself reported it is parked at the delivery's location",
  'vehicle.unlocked': 'The car confirmed it unlocked for the delivery',
  'vehicle.relocked': 'The car was locked again after its unlock (`data.by`: driver, watchdog, car, …)',
  'delivery.completed': 'The car confirmed locked after the delivery: it is complete',
  'delivery.failed': 'The delivery ended without completing (cancelled, or its car unlinked)',
  'access.denied': 'A request for the car was refused (`data.code`, `data.request`)',
  'vehicle.lock_unconfirmed': 'A lock was sent but the car did not confirm it (`data.cause`, `data.code`)',
};

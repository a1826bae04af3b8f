// Owns the zod schemas of the webhook routes: validation, serialization and OpenAPI come from them.
import { z } from 'zod';
import { EVENT_TYPES } from '../webhooks/events.ts';

const Id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/);

const WebhookUrl = z
  .url({ protocol: /^https?$/ })
  .max(2048)
  .describe(
    'Where events are POSTed: a public address (422 WEBHOOK_URL_FORBIDDEN otherwise), https in production',
  );

export const CreateWebhookBody = z.strictObject({
  url: WebhookUrl,
  events: z
    .array(z.enum(EVENT_TYPES))
    .min(1)
    .max(EVENT_TYPES.length)
    .refine((e) => new Set(e).size === e.length, 'events must not repeat'),
  /** Only keys bound to neither an owner nor a carrier name whose events these are. */
  ownerId: Id.optional(),
  carrierId: Id.optional(),
});

export const WebhookView = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(z.string()),
  ownerId: z.string().nullable(),
  carrierId: z.string().nullable(),
  createdAt: z.string(),
});

export const CreatedWebhookView = WebhookView.extend({
  secret: z.string().describe('The signing secret: shown only in this answer'),
});

export const WebhookList = z.object({ webhooks: z.array(WebhookView) });

export const WebhookParams = z.strictObject({ id: Id });

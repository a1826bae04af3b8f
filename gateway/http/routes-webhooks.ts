// Owns the webhook routes: subscribe (the secret is shown once), list and delete, each per owner or carrier.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Kysely } from 'kysely';
import type { Caller } from '../access/api-keys.ts';
import { callerOf, canSeeWebhook } from '../access/ownership.ts';
import { ApiError, WebhookUrlError } from '../errors.ts';
import type { Database } from '../store/schema.ts';
import type { WebhookDestinations } from '../webhooks/destination.ts';
import type { SecretBox } from '../webhooks/secret-box.ts';
import { newWebhookSecret } from '../webhooks/signature.ts';
import {
  deleteWebhook,
  findWebhook,
  insertWebhook,
  listWebhooks,
  type WebhookRecord,
} from '../webhooks/store.ts';
import { CreatedWebhookView, CreateWebhookBody, WebhookList, WebhookParams } from './webhook-schemas.ts';

export interface WebhookRouteDeps {
  db: Kysely<Database>;
  secrets: SecretBox;
  destinations: WebhookDestinations;
  now: () => number;
  newId: () => string;
}

const view = (w: WebhookRecord) => ({
  id: w.id,
  url: w.url,
  events: w.events,
  ownerId: w.ownerId,
  carrierId: w.carrierId,
  createdAt: new Date(w.createdAt).toISOString(),
});

/** Whose events: the key's own binding; an unbound key names exactly one owner or carrier. */
function subscriberOf(
  caller: Caller,
  body: { ownerId?: string | undefined; carrierId?: string | undefined },
): { ownerId: string | null; carrierId: string | null } {
  if (caller.ownerId !== null || caller.carrierId !== null) {
    if (body.ownerId !== undefined || body.carrierId !== undefined)
      throw new ApiError('FIELD_NOT_ALLOWED', { detail: 'the subscriber comes from the API key binding' });
    return { ownerId: caller.ownerId, carrierId: caller.carrierId };
  }
  if ((body.ownerId === undefined) === (body.carrierId === undefined))
    throw new ApiError('VALIDATION_FAILED', {
      detail: 'an unbound key names exactly one of ownerId, carrierId',
    });
  return { ownerId: body.ownerId ?? null, carrierId: body.carrierId ?? null };
}

/**
 * Before anything is written: a URL that names an address that is not public, in any spelling, or a localhost
 * name, or http in production, is refused. A name is judged again, by every address it resolves to, at each
 * delivery attempt (dispatcher, sender): what it resolves to now says nothing about later.
 */
function refuseForbiddenUrl(destinations: WebhookDestinations, url: string): void {
  try {
    destinations.checkUrl(url);
  } catch (err) {
    if (err instanceof WebhookUrlError) throw new ApiError('WEBHOOK_URL_FORBIDDEN', { detail: err.message });
    throw err;
  }
}

export function registerWebhookRoutes(app: FastifyInstance, deps: WebhookRouteDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const config = { scopes: ['webhooks'] as const };

  r.post(
    '/v1/webhooks',
    {
      config: { ...config, sealReplies: true },
      schema: { body: CreateWebhookBody, response: { 201: CreatedWebhookView } },
    },
    async (req, reply) => {
      const caller = callerOf(req);
      const subscriber = subscriberOf(caller, req.body);
      refuseForbiddenUrl(deps.destinations, req.body.url);
      const secret = newWebhookSecret();
      const record: WebhookRecord = {
        id: `wh_${deps.newId()}`,
        ...subscriber,
        url: req.body.url,
        events: req.body.events,
        createdBy: caller.keyId,
        createdAt: deps.now(),
      };
      await insertWebhook(deps.db, { ...record, secretSealed: deps.secrets.seal(record.id, secret) });
      // The only time the secret leaves the store in clear; the logger redacts `secret` by path.
      return reply.code(201).send({ ...view(record), secret });
    },
  );

  r.get('/v1/webhooks', { config, schema: { response: { 200: WebhookList } } }, async (req) => {
    // An unbound key is bound to neither, so it lists every live webhook.
    return { webhooks: (await listWebhooks(deps.db, callerOf(req))).map(view) };
  });

  r.delete('/v1/webhooks/:id', { config, schema: { params: WebhookParams } }, async (req, reply) => {
    const caller = callerOf(req);
    const w = await findWebhook(deps.db, req.params.id);
    if (!w || !canSeeWebhook(caller, w))
      throw new ApiError('NOT_FOUND', { detail: `no webhook ${req.params.id}` });
    await deleteWebhook(deps.db, w.id, deps.now());
    return reply.code(204).send();
  });
}

// Owns putting webhook delivery together from the settings: sealed secrets, the destinations webhooks may reach,
// and the dispatcher that sends the outbox.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../platform/config.ts';
import type { Database } from '../store/schema.ts';
import { createWebhookDestinations } from './destination.ts';
import { createWebhookDispatcher, type DispatcherDeps } from './dispatcher.ts';
import { createSecretBox, deriveSecretKey } from './secret-box.ts';

export function createWebhookDelivery(deps: {
  config: Pick<Config, 'WEBHOOK_ALLOW_PRIVATE' | 'NODE_ENV'>;
  db: Kysely<Database>;
  /** The token-signing key (PKCS#8 PEM) the secrets' sealing key is derived from. */
  tokenSigningKey: string;
  logger: Logger;
  now: () => number;
  onAttemptFailed: () => void;
  /** Hears of every outbox row the dispatcher settled (the console's live view). */
  onSettled?: DispatcherDeps['onSettled'];
  /** Timings, resolver and transport, as tests set them. */
  options?: Partial<Pick<DispatcherDeps, 'policy' | 'send' | 'resolve' | 'random'>>;
}) {
  // Webhook secrets are sealed with a key derived from the token-signing key: secret on every replica already.
  const webhookSecrets = createSecretBox(deriveSecretKey(deps.tokenSigningKey));
  // Where webhooks may go: public addresses only, https in production; the operator's allowlist is the way around.
  const webhookDestinations = createWebhookDestinations({
    allowPrivate: deps.config.WEBHOOK_ALLOW_PRIVATE ?? [],
    requireHttps: deps.config.NODE_ENV === 'production',
  });
  const webhooks = createWebhookDispatcher({
    db: deps.db,
    secrets: webhookSecrets,
    destinations: webhookDestinations,
    logger: deps.logger,
    now: deps.now,
    onAttemptFailed: deps.onAttemptFailed,
    ...(deps.onSettled ? { onSettled: deps.onSettled } : {}),
    ...deps.options,
  });
  return { webhookSecrets, webhookDestinations, webhooks };
}

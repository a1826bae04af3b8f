// Owns the rows of webhook subscriptions and of their outbox; every function takes a db or a transaction.
import type { Db } from '../store/db.ts';
import type { WebhookRow } from '../store/parties.ts';
import type { EventType } from './events.ts';

export interface WebhookRecord {
  id: string;
  ownerId: string | null;
  carrierId: string | null;
  url: string;
  events: EventType[];
  createdBy: string;
  createdAt: number;
}

export type OutboxStatus = 'pending' | 'delivered' | 'dead';

export interface OutboxRow {
  id: string;
  eventId: string;
  webhookId: string;
  eventType: string;
  payload: string;
  status: OutboxStatus;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
}

/** A webhook from its row (also as store/parties.ts reads it). */
export const webhookOfRow = (r: {
  id: string;
  owner_id: string | null;
  carrier_id: string | null;
  url: string;
  events: string;
  created_by: string;
  created_at: number;
}): WebhookRecord => ({
  id: r.id,
  ownerId: r.owner_id,
  carrierId: r.carrier_id,
  url: r.url,
  events: r.events.split(',').filter(Boolean) as EventType[],
  createdBy: r.created_by,
  createdAt: Number(r.created_at),
});

/** The row a webhook was read from, for the transaction's memo (store/parties.ts). */
export const rowOfWebhook = (w: WebhookRecord): WebhookRow => ({
  id: w.id,
  owner_id: w.ownerId,
  carrier_id: w.carrierId,
  url: w.url,
  events: w.events.join(','),
  created_by: w.createdBy,
  created_at: w.createdAt,
});

const WEBHOOK_COLUMNS = [
  'id',
  'owner_id',
  'carrier_id',
  'url',
  'events',
  'created_by',
  'created_at',
] as const;

export async function insertWebhook(db: Db, w: WebhookRecord & { secretSealed: string }): Promise<void> {
  await db
    .insertInto('webhooks')
    .values({
      id: w.id,
      owner_id: w.ownerId,
      carrier_id: w.carrierId,
      url: w.url,
      events: w.events.join(','),
      secret_enc: w.secretSealed,
      created_by: w.createdBy,
      created_at: w.createdAt,
      deleted_at: null,
    })
    .execute();
}

/** Live webhooks of one owner or one carrier; of everyone when both are null (an unbound key). */
export async function listWebhooks(
  db: Db,
  of: { ownerId: string | null; carrierId: string | null },
): Promise<WebhookRecord[]> {
  let q = db.selectFrom('webhooks').select(WEBHOOK_COLUMNS).where('deleted_at', 'is', null);
  if (of.ownerId !== null) q = q.where('owner_id', '=', of.ownerId);
  if (of.carrierId !== null) q = q.where('carrier_id', '=', of.carrierId);
  const rows = await q.orderBy('created_at').orderBy('id').execute();
  return rows.map(webhookOfRow);
}

export async function findWebhook(db: Db, id: string): Promise<WebhookRecord | null> {
  const row = await db
    .selectFrom('webhooks')
    .select(WEBHOOK_COLUMNS)
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return row ? webhookOfRow(row) : null;
}

/** The sealed secret of a live webhook, for signing; null once deleted. */
export async function findWebhookTarget(
  db: Db,
  id: string,
): Promise<{ url: string; secretSealed: string } | null> {
  const row = await db
    .selectFrom('webhooks')
    .select(['url', 'secret_enc'])
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return row ? { url: row.url, secretSealed: row.secret_enc } : null;
}

export async function deleteWebhook(db: Db, id: string, at: number): Promise<void> {
  await db.updateTable('webhooks').set({ deleted_at: at }).where('id', '=', id).execute();
}

/** Live webhooks of the owner, or of the carrier when there is one, that subscribe to this event type. */
export async function subscribersOf(
  db: Db,
  event: { type: EventType; ownerId: string; carrierId: string | null },
): Promise<WebhookRecord[]> {
  return (await liveWebhooksOf(db, event)).filter((w) => w.events.includes(event.type));
}

/** Live webhooks of the owner, or of the carrier when there is one, whatever they subscribe to. */
export async function liveWebhooksOf(
  db: Db,
  event: { ownerId: string; carrierId: string | null },
): Promise<WebhookRecord[]> {
  const rows = await db
    .selectFrom('webhooks')
    .select(WEBHOOK_COLUMNS)
    .where('deleted_at', 'is', null)
    .where((eb) =>
      event.carrierId === null
        ? eb('owner_id', '=', event.ownerId)
        : eb.or([eb('owner_id', '=', event.ownerId), eb('carrier_id', '=', event.carrierId)]),
    )
    .orderBy('id')
    .execute();
  return rows.map(webhookOfRow);
}

export async function insertOutbox(
  db: Db,
  row: { id: string; eventId: string; webhookId: string; eventType: string; payload: string; at: number },
): Promise<void> {
  await db
    .insertInto('webhook_outbox')
    .values({
      id: row.id,
      event_id: row.eventId,
      webhook_id: row.webhookId,
      event_type: row.eventType,
      payload: row.payload,
      status: 'pending',
      attempts: 0,
      next_attempt_at: row.at,
      lease_until: null,
      last_error: null,
      created_at: row.at,
      delivered_at: null,
    })
    .execute();
}

const toOutbox = (r: {
  id: string;
  event_id: string;
  webhook_id: string;
  event_type: string;
  payload: string;
  status: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
}): OutboxRow => ({
  id: r.id,
  eventId: r.event_id,
  webhookId: r.webhook_id,
  eventType: r.event_type,
  payload: r.payload,
  status: r.status as OutboxStatus,
  attempts: Number(r.attempts),
  nextAttemptAt: Number(r.next_attempt_at),
  lastError: r.last_error,
});

const OUTBOX_COLUMNS = [
  'id',
  'event_id',
  'webhook_id',
  'event_type',
  'payload',
  'status',
  'attempts',
  'next_attempt_at',
  'last_error',
] as const;

/** Pending rows that are due and not leased by another dispatcher, oldest first. */
export async function dueOutbox(db: Db, now: number, limit: number): Promise<OutboxRow[]> {
  const rows = await db
    .selectFrom('webhook_outbox')
    .select(OUTBOX_COLUMNS)
    .where('status', '=', 'pending')
    .where('next_attempt_at', '<=', now)
    .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
    .orderBy('next_attempt_at')
    .orderBy('id')
    .limit(limit)
    .execute();
  return rows.map(toOutbox);
}

/** Takes a row for leaseMs; false when another dispatcher (another replica) took it first. */
export async function leaseOutbox(db: Db, id: string, now: number, leaseMs: number): Promise<boolean> {
  const r = await db
    .updateTable('webhook_outbox')
    .set({ lease_until: now + leaseMs })
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

export async function settleOutbox(
  db: Db,
  id: string,
  s: { status: OutboxStatus; attempts: number; nextAttemptAt: number; lastError: string | null; at: number },
): Promise<void> {
  await db
    .updateTable('webhook_outbox')
    .set({
      status: s.status,
      attempts: s.attempts,
      next_attempt_at: s.nextAttemptAt,
      last_error: s.lastError,
      lease_until: null,
      ...(s.status === 'delivered' ? { delivered_at: s.at } : {}),
    })
    .where('id', '=', id)
    .execute();
}

export async function outboxOf(db: Db, eventId: string): Promise<OutboxRow[]> {
  const rows = await db
    .selectFrom('webhook_outbox')
    .select(OUTBOX_COLUMNS)
    .where('event_id', '=', eventId)
    .orderBy('id')
    .execute();
  return rows.map(toOutbox);
}

/** Rows still to be sent (pending: due, waiting for a retry, or being sent); the outbox depth gauge. */
export async function countPendingOutbox(db: Db): Promise<number> {
  const row = await db
    .selectFrom('webhook_outbox')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** Drops delivered and dead rows older than the cut-off; pending rows stay until they settle. */
export async function purgeOutbox(db: Db, before: number): Promise<number> {
  const r = await db
    .deleteFrom('webhook_outbox')
    .where('status', 'in', ['delivered', 'dead'])
    .where('created_at', '<', before)
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}

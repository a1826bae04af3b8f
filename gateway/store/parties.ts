// Owns who hears of a delivery's event: the vehicle's owner, the delivery's carrier and their live webhooks, read in
// one statement once per transaction (a lock's ack raises two events in one unit).
import type { Transaction } from 'kysely';
import type { Db } from './db.ts';
import { prepared } from './prepared.ts';
import type { Database } from './schema.ts';
import { transactionMemo } from './transaction-memo.ts';

/** A live webhook's row, as the outbox reads it (gateway/webhooks/store.ts maps it). */
export interface WebhookRow {
  id: string;
  owner_id: string | null;
  carrier_id: string | null;
  url: string;
  events: string;
  created_by: string;
  created_at: number;
}

export interface Parties {
  ownerId: string;
  carrierId: string | null;
}

const selectParties = prepared((db, deliveryId: string, vin: string) =>
  db
    .selectFrom('vehicles as v')
    .leftJoin('deliveries as d', (join) => join.on('d.id', '=', deliveryId))
    .leftJoin('webhooks as w', (join) =>
      join
        .on('w.deleted_at', 'is', null)
        .on((eb) =>
          eb.or([
            eb('w.owner_id', '=', eb.ref('v.owner_id')),
            eb('w.carrier_id', '=', eb.ref('d.carrier_id')),
          ]),
        ),
    )
    .select([
      'v.owner_id as party_owner',
      'd.carrier_id as party_carrier',
      'w.id',
      'w.owner_id',
      'w.carrier_id',
      'w.url',
      'w.events',
      'w.created_by',
      'w.created_at',
    ])
    .where('v.vin', '=', vin)
    .orderBy('w.id'),
);

const memoOf = (db: Db): Map<string, unknown> | null =>
  db.isTransaction ? transactionMemo(db as Transaction<Database>) : null;
const webhooksKey = (ownerId: string, carrierId: string | null): string =>
  `webhooks:${ownerId}:${carrierId ?? ''}`;

/**
 * The owner and carrier who hear of this delivery's events (null when the vehicle is unknown), read with their live
 * webhooks, which the outbox then takes from the transaction (knownWebhooks) instead of reading them again.
 */
export async function partiesOf(db: Db, deliveryId: string, vin: string): Promise<Parties | null> {
  const memo = memoOf(db);
  const key = `parties:${deliveryId}`;
  if (memo?.has(key)) return memo.get(key) as Parties | null;
  const rows = (await selectParties(db, deliveryId, vin)).rows;
  const first = rows[0];
  const parties = first ? { ownerId: first.party_owner, carrierId: first.party_carrier ?? null } : null;
  memo?.set(key, parties);
  if (parties && memo) {
    const webhooks: WebhookRow[] = [];
    for (const r of rows) {
      if (
        r.id === null ||
        r.url === null ||
        r.events === null ||
        r.created_by === null ||
        r.created_at === null
      )
        continue;
      webhooks.push({
        id: r.id,
        owner_id: r.owner_id,
        carrier_id: r.carrier_id,
        url: r.url,
        events: r.events,
        created_by: r.created_by,
        created_at: Number(r.created_at),
      });
    }
    memo.set(webhooksKey(parties.ownerId, parties.carrierId), webhooks);
  }
  return parties;
}

/** The live webhooks of these parties, if this transaction read them already. */
export function knownWebhooks(db: Db, ownerId: string, carrierId: string | null): WebhookRow[] | undefined {
  return memoOf(db)?.get(webhooksKey(ownerId, carrierId)) as WebhookRow[] | undefined;
}

/** Remembers the live webhooks of these parties for the rest of the transaction. */
export function rememberWebhooks(
  db: Db,
  ownerId: string,
  carrierId: string | null,
  rows: WebhookRow[],
): void {
  memoOf(db)?.set(webhooksKey(ownerId, carrierId), rows);
}

// Owns a delivery's timeline rows, each appended with its audit entry in one transaction.

import { sql } from 'kysely';
import { appendAudit } from './audit.ts';
import type { Db } from './db.ts';
import { withinTransaction } from './db.ts';
import { prepared } from './prepared.ts';

export interface TimelineEntry {
  seq: number;
  at: number;
  kind: string;
  outcome: 'granted' | 'denied' | 'info';
  code: string | null;
  detail: Record<string, unknown>;
}

/**
 * Appends a timeline event and its audit entry, in one transaction: the caller's, or a new one. `at` is the
 * decision's time, but never earlier than the entry before it: a decision taken before another one was written
 * (a request and the reconciler racing for the store) would otherwise show time running backwards along `seq`.
 * The clamp runs in the INSERT itself, so it is atomic, and the audit entry records the time the timeline got.
 */
const insertEvent = prepared(
  (db, deliveryId: string, at: number, kind: string, outcome: string, code: string | null, detail: string) =>
    db
      .insertInto('delivery_events')
      .values({
        delivery_id: deliveryId,
        // GREATEST(at, the last entry's at), written so that SQLite and PostgreSQL both read it.
        at: sql<number>`(select case when ${at} > coalesce(max(at), 0) then ${at} else coalesce(max(at), 0) end from delivery_events where delivery_id = ${deliveryId})`,
        kind,
        outcome,
        code,
        detail,
      })
      .returning('at'),
);

export async function appendEvent(db: Db, deliveryId: string, e: Omit<TimelineEntry, 'seq'>): Promise<void> {
  // protocols/AUDIT.md §4: the audit entry commits with the decision or not at all.
  if (!db.isTransaction) return withinTransaction(db, (trx) => appendEvent(trx, deliveryId, e));
  const { rows } = await insertEvent(
    db,
    deliveryId,
    e.at,
    e.kind,
    e.outcome,
    e.code,
    JSON.stringify(e.detail),
  );
  const written = rows[0];
  if (!written) throw new Error('delivery event not written');
  await appendAudit(db, { ...e, at: Number(written.at), deliveryId });
}

export async function timelineOf(db: Db, deliveryId: string): Promise<TimelineEntry[]> {
  const rows = await db
    .selectFrom('delivery_events')
    .selectAll()
    .where('delivery_id', '=', deliveryId)
    .orderBy('seq')
    .execute();
  return rows.map((r) => ({
    seq: Number(r.seq),
    at: Number(r.at),
    kind: r.kind,
    outcome: r.outcome as TimelineEntry['outcome'],
    code: r.code,
    detail: JSON.parse(r.detail) as Record<string, unknown>,
  }));
}

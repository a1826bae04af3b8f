// Owns a delivery's timeline: a view of the audit log (the entries that name the delivery), after the rows the
// timeline table held before it became one.

import { queueAudit } from './audit.ts';
import type { Db } from './db.ts';

export interface TimelineEntry {
  seq: number;
  at: number;
  kind: string;
  outcome: 'granted' | 'denied' | 'info';
  code: string | null;
  detail: Record<string, unknown>;
}

/** Audit entries that name a delivery without being one of its timeline events. */
export const NOT_ON_TIMELINE = ['api_key_used'] as const;

/**
 * Appends a timeline event: one audit entry naming the delivery, in the caller's unit (or a new transaction), so
 * it commits with the decision or not at all (protocols/AUDIT.md §4). Its time is never earlier than the entry
 * before it (store/audit.ts), so time never runs backwards along a timeline.
 */
export async function appendEvent(db: Db, deliveryId: string, e: Omit<TimelineEntry, 'seq'>): Promise<void> {
  await queueAudit(db, { ...e, deliveryId });
}

/**
 * Where the view starts (migration 0010): audit entries from `auditFrom` on are the timeline; the events written
 * before stay in delivery_events, numbered up to `seqBase`. An entry's seq is seqBase + 1 + (idx - auditFrom),
 * so seq keeps growing across the change.
 */
async function viewStart(db: Db): Promise<{ auditFrom: number; seqBase: number }> {
  const row = await db.selectFrom('timeline_start').selectAll().executeTakeFirst();
  return { auditFrom: Number(row?.audit_from ?? 0), seqBase: Number(row?.seq_base ?? 0) };
}

/** The timelines of these deliveries, each in order. */
export async function timelinesOf(
  db: Db,
  deliveryIds: readonly string[],
): Promise<Map<string, TimelineEntry[]>> {
  const timelines = new Map<string, TimelineEntry[]>(deliveryIds.map((id) => [id, []]));
  if (deliveryIds.length === 0) return timelines;
  const { auditFrom, seqBase } = await viewStart(db);
  const legacy = await db
    .selectFrom('delivery_events')
    .selectAll()
    .where('delivery_id', 'in', deliveryIds)
    .orderBy('seq')
    .execute();
  for (const r of legacy) {
    timelines.get(r.delivery_id)?.push({
      seq: Number(r.seq),
      at: Number(r.at),
      kind: r.kind,
      outcome: r.outcome as TimelineEntry['outcome'],
      code: r.code,
      detail: JSON.parse(r.detail) as Record<string, unknown>,
    });
  }
  const entries = await db
    .selectFrom('audit_entries')
    .select(['idx', 'delivery_id', 'entry'])
    .where('delivery_id', 'in', deliveryIds)
    .where('idx', '>=', auditFrom)
    .where('kind', 'not in', NOT_ON_TIMELINE)
    .orderBy('idx')
    .execute();
  for (const r of entries) {
    const e = JSON.parse(r.entry) as Omit<TimelineEntry, 'seq'>;
    timelines.get(r.delivery_id as string)?.push({
      seq: seqBase + 1 + Number(r.idx) - auditFrom,
      at: e.at,
      kind: e.kind,
      outcome: e.outcome,
      code: e.code,
      detail: e.detail,
    });
  }
  return timelines;
}

export async function timelineOf(db: Db, deliveryId: string): Promise<TimelineEntry[]> {
  return (await timelinesOf(db, [deliveryId])).get(deliveryId) ?? [];
}

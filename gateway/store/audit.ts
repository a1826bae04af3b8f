// Owns the audit log's rows: appending entries inside the caller's transaction, reading them, storing checkpoints.
import type { Transaction } from 'kysely';
import {
  type AuditEntry,
  AuditError,
  type AuditInput,
  buildEncodedEntry,
  leafHash as leafHashOf,
} from '../../protocols/audit/index.ts';
import { type Db, withinTransaction } from './db.ts';
import { prepared } from './prepared.ts';
import type { Database } from './schema.ts';
import { transactionMemo } from './transaction-memo.ts';

export interface AppendedEntry {
  index: number;
  leafHash: Buffer;
}

interface Tail {
  index: number;
  leafHash: Buffer;
}

const TAIL = 'audit.tail';

const selectTail = prepared((db) =>
  db.selectFrom('audit_entries').select(['idx', 'leaf_hash']).orderBy('idx', 'desc').limit(1),
);

const insertEntry = prepared(
  (db, idx: number, leafHash: string, deliveryId: string | null, kind: string, at: number, entry: string) =>
    db
      .insertInto('audit_entries')
      .values({ idx, leaf_hash: leafHash, delivery_id: deliveryId, kind, at, entry }),
);

async function readTail(trx: Transaction<Database>): Promise<Tail | null> {
  const memo = transactionMemo(trx);
  const known = memo.get(TAIL) as Tail | undefined;
  if (known) return known;
  const row = (await selectTail(trx)).rows[0];
  return row ? { index: Number(row.idx), leafHash: Buffer.from(row.leaf_hash, 'base64') } : null;
}

/**
 * Appends one entry. The index is the last index + 1, read in the same transaction (once: the transaction
 * then remembers the tail it appended, transaction-memo.ts), and idx is the primary key: on SQLite the single
 * writer orders appends; on a store with concurrent writers the second of two transactions that read the same
 * tail fails on the key and rolls back with its decision, so the log can never fork or hold a gap
 * (protocols/AUDIT.md §4).
 */
export async function appendAudit(db: Db, input: AuditInput): Promise<AppendedEntry> {
  return withinTransaction(db, async (trx) => {
    const tail = await readTail(trx);
    const index = tail ? tail.index + 1 : 0;
    const { entry, text } = buildEncodedEntry(input, index, tail?.leafHash ?? null);
    const leafHash = leafHashOf(Buffer.from(text, 'utf8'));
    const memo = transactionMemo(trx);
    memo.delete(TAIL);
    await insertEntry(trx, index, leafHash.toString('base64'), entry.deliveryId, entry.kind, entry.at, text);
    memo.set(TAIL, { index, leafHash });
    return { index, leafHash };
  });
}

/** Number of entries: the last index + 1. */
export async function auditTreeSize(db: Db): Promise<number> {
  const row = await db
    .selectFrom('audit_entries')
    .select('idx')
    .orderBy('idx', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row ? Number(row.idx) + 1 : 0;
}

/** Leaf hashes of entries [0, size); refuses a store whose indexes have a gap. */
export async function auditLeafHashes(db: Db, size: number): Promise<Buffer[]> {
  const rows = await db
    .selectFrom('audit_entries')
    .select(['idx', 'leaf_hash'])
    .where('idx', '<', size)
    .orderBy('idx')
    .execute();
  rows.forEach((r, i) => {
    if (Number(r.idx) !== i) throw new AuditError('LOG_GAP', `the store has no audit entry ${i}`);
  });
  if (rows.length !== size)
    throw new AuditError('LOG_GAP', `the store has ${rows.length} of ${size} entries`);
  return rows.map((r) => Buffer.from(r.leaf_hash, 'base64'));
}

/** Entries [from, to), parsed from the exact text that was hashed. */
export async function readAuditEntries(db: Db, from: number, to: number): Promise<AuditEntry[]> {
  const rows = await db
    .selectFrom('audit_entries')
    .select('entry')
    .where('idx', '>=', from)
    .where('idx', '<', to)
    .orderBy('idx')
    .execute();
  return rows.map((r) => JSON.parse(r.entry) as AuditEntry);
}

export async function findAuditIndex(db: Db, leafHash: Buffer): Promise<number | null> {
  const row = await db
    .selectFrom('audit_entries')
    .select('idx')
    .where('leaf_hash', '=', leafHash.toString('base64'))
    .executeTakeFirst();
  return row ? Number(row.idx) : null;
}

export interface StoredCheckpoint {
  size: number;
  root: Buffer;
  note: string;
  createdAt: number;
}

const toCheckpoint = (r: { tree_size: number; root_hash: string; note: string; created_at: number }) => ({
  size: Number(r.tree_size),
  root: Buffer.from(r.root_hash, 'base64'),
  note: r.note,
  createdAt: Number(r.created_at),
});

/** Stores a checkpoint; one per tree size, and a second signing of a size already stored is kept out. */
export async function insertCheckpoint(db: Db, cp: StoredCheckpoint): Promise<void> {
  await db
    .insertInto('audit_checkpoints')
    .values({
      tree_size: cp.size,
      root_hash: cp.root.toString('base64'),
      note: cp.note,
      created_at: cp.createdAt,
    })
    .onConflict((oc) => oc.column('tree_size').doNothing())
    .execute();
}

export async function latestCheckpoint(db: Db): Promise<StoredCheckpoint | null> {
  const row = await db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .orderBy('tree_size', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row ? toCheckpoint(row) : null;
}

export async function listCheckpoints(db: Db, maxSize: number): Promise<StoredCheckpoint[]> {
  const rows = await db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .where('tree_size', '<=', maxSize)
    .orderBy('tree_size')
    .execute();
  return rows.map(toCheckpoint);
}

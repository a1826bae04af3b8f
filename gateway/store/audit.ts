// Owns the audit log's rows: appending entries inside the caller's transaction, reading them, storing checkpoints.
import { PostgresAdapter, sql, type Transaction } from 'kysely';
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

/** The last entry: where the next one chains on, and the time it may not precede. */
export interface AuditTail {
  index: number;
  leafHash: Buffer;
  at: number;
}

const TAIL = 'audit.tail';
/** The tail in the memo came from an earlier transaction (seedAuditTail), not from this one's own read. */
const CARRIED = 'audit.tail.carried';

/**
 * Appends serialise on PostgreSQL through this transaction-scoped advisory lock: several gateway replicas may
 * write the same database, and each reads the tail only once it holds the lock, so the log stays one chain.
 */
export const AUDIT_APPEND_LOCK = 0x61756469; // 'audi'

const selectTail = prepared((db) =>
  db.selectFrom('audit_entries').select(['idx', 'leaf_hash', 'at']).orderBy('idx', 'desc').limit(1),
);

const insertEntry = prepared(
  (db, idx: number, leafHash: string, deliveryId: string | null, kind: string, at: number, entry: string) =>
    db
      .insertInto('audit_entries')
      .values({ idx, leaf_hash: leafHash, delivery_id: deliveryId, kind, at, entry }),
);

const onPostgres = (trx: Transaction<Database>): boolean =>
  trx.getExecutor().adapter instanceof PostgresAdapter;

/** The transaction holds the audit log's advisory lock (PostgreSQL), as far as it remembers. */
const LOCKED = 'audit.locked';

/**
 * Takes the audit log's advisory lock for the rest of the transaction (PostgreSQL; nothing on SQLite) and remembers
 * it, so that the append after it does not ask again. Replicas take it first thing in every unit
 * (cluster/serialised-writes.ts).
 */
export async function lockAuditLog(trx: Transaction<Database>): Promise<void> {
  const memo = transactionMemo(trx);
  if (!onPostgres(trx) || memo.get(LOCKED)) return;
  await sql`select pg_advisory_xact_lock(${AUDIT_APPEND_LOCK})`.execute(trx);
  memo.set(LOCKED, true);
}

async function readTail(trx: Transaction<Database>): Promise<AuditTail | null> {
  const memo = transactionMemo(trx);
  if (memo.has(TAIL)) return memo.get(TAIL) as AuditTail | null;
  await lockAuditLog(trx);
  const row = (await selectTail(trx)).rows[0];
  const tail = row
    ? { index: Number(row.idx), leafHash: Buffer.from(row.leaf_hash, 'base64'), at: Number(row.at) }
    : null;
  memo.set(TAIL, tail);
  return tail;
}

/**
 * The tail this transaction ended with, as far as it knows it (undefined: it never read or wrote the log, or
 * forgot it after a rollback to a savepoint). Group commit carries it into the next transaction on SQLite, where
 * this process is the only writer in practice (seedAuditTail).
 */
export function auditTailOf(trx: Transaction<Database>): AuditTail | null | undefined {
  return transactionMemo(trx).get(TAIL) as AuditTail | null | undefined;
}

/**
 * Starts a SQLite transaction from the tail the previous one ended with, so that appends need not read it. Another
 * process may still have appended since (a CLI on the same file): the insert then fails on the index, and the
 * append reads the real tail and tries again (appendAudit). Never on PostgreSQL: there a failed statement ends the
 * transaction, and the tail is read under the advisory lock instead.
 */
export function seedAuditTail(trx: Transaction<Database>, tail: AuditTail | null): void {
  const memo = transactionMemo(trx);
  memo.set(TAIL, tail);
  memo.set(CARRIED, true);
}

const isKeyConflict = (error: unknown): boolean =>
  typeof (error as { code?: unknown }).code === 'string' &&
  (error as { code: string }).code.startsWith('SQLITE_CONSTRAINT');

/**
 * Appends one entry. The index is the last index + 1, read in the same transaction (once: the transaction then
 * remembers the tail it appended, transaction-memo.ts), and idx is the primary key, so the log can never fork or
 * hold a gap (protocols/AUDIT.md §4): on SQLite the single writer orders appends, on PostgreSQL the advisory lock
 * does. `at` is never earlier than the entry before it: a decision taken before another one was written (a request
 * and the reconciler racing for the store) would otherwise show time running backwards along the log and along a
 * delivery's timeline, which is a view of it (timeline.ts). The entry records the time it got. Entries queued
 * before it in the same unit (queueAudit) are written first, so the rows keep the chain's order.
 */
export async function appendAudit(db: Db, input: AuditInput): Promise<AppendedEntry> {
  return withinTransaction(db, async (trx) => {
    await flushAudit(trx);
    const memo = transactionMemo(trx);
    try {
      return await insertAfter(trx, await readTail(trx), [input]).then(
        (entries) => entries[0] as AppendedEntry,
      );
    } catch (error) {
      if (!memo.get(CARRIED) || !isKeyConflict(error)) throw error;
      // The carried tail was stale (another process appended): read the real one, once.
      memo.delete(TAIL);
      memo.delete(CARRIED);
      return (await insertAfter(trx, await readTail(trx), [input]))[0] as AppendedEntry;
    }
  });
}

/** Entries a unit appended with queueAudit and has not written yet, in order. */
const QUEUED = 'audit.queued';
/** The transaction is a group-commit unit's: it calls flushAudit before the unit ends (group-commit.ts). */
const DEFERRING = 'audit.deferring';

/**
 * Marks a unit's transaction as one that writes queued entries (flushAudit) before the unit is released or
 * committed. Only the group commit does this: it owns where a unit ends.
 */
export function deferAudit(trx: Transaction<Database>): void {
  transactionMemo(trx).set(DEFERRING, true);
}

/**
 * Appends one entry whose index the caller does not need: inside a group-commit unit it is queued, and the
 * unit's queued entries are written together in one INSERT when the unit ends (flushAudit), so a decision's
 * entries (its key use, its events) cost one statement. Elsewhere it is appended at once (appendAudit). Either
 * way it commits with the unit or not at all, and the log's order, indexes and chain are those appendAudit gives.
 */
export async function queueAudit(db: Db, input: AuditInput): Promise<void> {
  if (!db.isTransaction || !transactionMemo(db as Transaction<Database>).get(DEFERRING)) {
    await appendAudit(db, input);
    return;
  }
  const memo = transactionMemo(db as Transaction<Database>);
  const queued = (memo.get(QUEUED) as AuditInput[] | undefined) ?? [];
  queued.push(input);
  memo.set(QUEUED, queued);
}

/**
 * Writes the entries the unit queued, in one INSERT, chained on the tail (read once per transaction, or carried:
 * a stale carried tail fails on the index, and the entries are chained again on the real one).
 */
export async function flushAudit(trx: Transaction<Database>): Promise<void> {
  const memo = transactionMemo(trx);
  const queued = memo.get(QUEUED) as AuditInput[] | undefined;
  if (!queued || queued.length === 0) return;
  memo.delete(QUEUED);
  try {
    await insertAfter(trx, await readTail(trx), queued);
  } catch (error) {
    if (!memo.get(CARRIED) || !isKeyConflict(error)) throw error;
    memo.delete(TAIL);
    memo.delete(CARRIED);
    await insertAfter(trx, await readTail(trx), queued);
  }
}

/** Chains the inputs on `tail` and writes them in one statement; the tail moves only once the rows are in. */
async function insertAfter(
  trx: Transaction<Database>,
  tail: AuditTail | null,
  inputs: readonly AuditInput[],
): Promise<AppendedEntry[]> {
  let last = tail;
  const rows: Array<{
    idx: number;
    leaf_hash: string;
    delivery_id: string | null;
    kind: string;
    at: number;
    entry: string;
  }> = [];
  const appended: AppendedEntry[] = [];
  for (const input of inputs) {
    const index = last ? last.index + 1 : 0;
    const at = last && last.at > input.at ? last.at : input.at;
    const { entry, text } = buildEncodedEntry({ ...input, at }, index, last?.leafHash ?? null);
    const leafHash = leafHashOf(Buffer.from(text, 'utf8'));
    rows.push({
      idx: index,
      leaf_hash: leafHash.toString('base64'),
      delivery_id: entry.deliveryId,
      kind: entry.kind,
      at: entry.at,
      entry: text,
    });
    appended.push({ index, leafHash });
    last = { index, leafHash, at: entry.at };
  }
  const [only] = rows;
  if (rows.length === 1 && only) {
    await insertEntry(trx, only.idx, only.leaf_hash, only.delivery_id, only.kind, only.at, only.entry);
  } else {
    await trx.insertInto('audit_entries').values(rows).execute();
  }
  transactionMemo(trx).set(TAIL, last);
  return appended;
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

// Owns values a transaction remembers for its own later statements, which must be forgotten whenever part of the
// transaction is rolled back.
import type { Transaction } from 'kysely';
import type { Database } from './schema.ts';

const memos = new WeakMap<Transaction<Database>, Map<string, unknown>>();

/**
 * What this transaction remembers. A value stored here must describe the transaction's own view of the store
 * (such as the audit log's tail after its last append), never something another transaction could change in
 * between: SQLite has one writer, and on a store with concurrent writers a key constraint must still refuse a
 * stale value. A transaction that ends is never used again; a unit rolled back to its savepoint calls
 * forgetTransactionMemo.
 */
export function transactionMemo(trx: Transaction<Database>): Map<string, unknown> {
  let memo = memos.get(trx);
  if (!memo) {
    memo = new Map();
    memos.set(trx, memo);
  }
  return memo;
}

/** Forgets everything the transaction remembered, after a rollback to a savepoint undid some of its writes. */
export function forgetTransactionMemo(trx: Transaction<Database>): void {
  memos.delete(trx);
}

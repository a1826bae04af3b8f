// Owns what every table's queries share: the handle they run on (a db or a transaction) and value helpers.

import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';

export type Db = Kysely<Database> | Transaction<Database>;

export const nullableNumber = (v: number | null): number | null => (v === null ? null : Number(v));

/** Runs fn in the caller's transaction, or in a new one: an audit entry never lands apart from its decision. */
export async function withinTransaction<T>(
  db: Db,
  fn: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  if (db.isTransaction) return fn(db as Transaction<Database>);
  return db.transaction().execute(fn);
}

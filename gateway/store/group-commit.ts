// Owns group commit: write units from concurrent requests share one SQLite transaction and one trip to the
// disk, and each unit still commits or rolls back on its own (a savepoint each) and is answered only once
// durable.
import { type Kysely, sql, type Transaction } from 'kysely';
import { type AuditTail, auditTailOf, deferAudit, flushAudit, seedAuditTail } from './audit.ts';
import type { Database } from './schema.ts';
import { forgetTransactionMemo } from './transaction-memo.ts';

/**
 * A unit of writes that must be atomic and durable before its caller hears back. It uses only `trx`: never
 * db, and never write() again (either would wait for the batch that is waiting for it).
 */
export type WriteUnit<T> = (trx: Transaction<Database>) => Promise<T>;
export type Write = <T>(unit: WriteUnit<T>) => Promise<T>;

/** write(unit), and a way to wait for the transaction in flight. */
export type GroupCommit = Write & {
  /**
   * Resolves once the batch committing now, if any, has committed or rolled back. Something a unit noted for later
   * (a console frame, a webhook to send) reads after it: on a store with several connections a read does not wait
   * for the transaction, and would otherwise see the state from before the unit.
   */
  settled(): Promise<void>;
};

export interface GroupCommitOptions {
  /** Most units per transaction; the rest wait for the next one. */
  maxBatch?: number;
  /** Schedules a batch; setImmediate by default, so every unit queued in one event-loop turn shares it. */
  schedule?: (run: () => void) => void;
  /**
   * Starts each transaction from the audit log's tail the last one committed (SQLite, where this process is the
   * writer): appends then read no tail (store/audit.ts seedAuditTail).
   */
  carryAuditTail?: boolean;
}

interface Queued {
  unit: WriteUnit<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export const DEFAULT_MAX_BATCH = 256;

/**
 * Returns write(unit). One transaction per request costs one fsync per request (synchronous=FULL syncs at
 * every COMMIT). Here the units queued during one turn of the event loop run one after another inside one
 * transaction, each between SAVEPOINT and RELEASE (a unit alone in its batch runs without them: its
 * transaction rolls back whole if it throws, two statements fewer): a unit that throws is rolled back to its savepoint alone
 * and its caller gets the error; the others commit together, with one fsync. Units get a real Kysely
 * Transaction, so code that must share its caller's transaction (the audit append, protocols/AUDIT.md §4)
 * joins the unit's savepoint and commits or rolls back with it. Callers are answered only after COMMIT
 * returned, so an acknowledged write is as durable as with a transaction of its own; if COMMIT fails, every
 * unit of the batch fails. The audit entries a unit queues (store/audit.ts queueAudit) are written in one INSERT
 * when the unit returns, before its RELEASE or COMMIT.
 */
export function createGroupCommit(db: Kysely<Database>, options: GroupCommitOptions = {}): GroupCommit {
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  const schedule = options.schedule ?? ((run) => setImmediate(run));
  let queue: Queued[] = [];
  let scheduled = false;
  let running = false;
  /** The batch in flight: settled() waits for it. */
  let current: Promise<void> | null = null;
  /** The audit tail the last committed transaction ended with; undefined when unknown. */
  let carried: AuditTail | null | undefined;
  const begin = (trx: Transaction<Database>): void => {
    if (options.carryAuditTail && carried !== undefined) seedAuditTail(trx, carried);
  };
  const end = (trx: Transaction<Database>): void => {
    if (options.carryAuditTail) carried = auditTailOf(trx);
  };

  const request = (): void => {
    if (scheduled || running) return;
    scheduled = true;
    schedule(() => {
      scheduled = false;
      const run = flush();
      current = run;
      void run.finally(() => {
        if (current === run) current = null;
      });
    });
  };

  const flush = async (): Promise<void> => {
    if (queue.length === 0) return;
    running = true;
    const batch = queue.slice(0, maxBatch);
    queue = queue.slice(batch.length);
    const outcomes: Array<() => void> = [];
    try {
      const alone = batch.length === 1 ? (batch[0] as Queued) : null;
      if (alone) {
        // One unit alone needs no savepoint: the transaction is its unit, and rolls back whole if it throws.
        let value: unknown;
        let ended: Transaction<Database> | null = null;
        try {
          value = await db.transaction().execute(async (trx) => {
            begin(trx);
            deferAudit(trx);
            const result = await alone.unit(trx);
            await flushAudit(trx);
            ended = trx;
            return result;
          });
        } catch (error) {
          carried = undefined;
          alone.reject(error);
          return;
        }
        if (ended) end(ended);
        alone.resolve(value);
        return;
      }
      let ended: Transaction<Database> | null = null;
      await db.transaction().execute(async (trx) => {
        begin(trx);
        ended = trx;
        for (const { unit, resolve, reject } of batch) {
          await sql`savepoint unit`.execute(trx);
          try {
            deferAudit(trx);
            const value = await unit(trx);
            await flushAudit(trx);
            await sql`release savepoint unit`.execute(trx);
            outcomes.push(() => resolve(value));
          } catch (error) {
            // ROLLBACK TO keeps the savepoint on the stack; RELEASE then removes it.
            await sql`rollback to savepoint unit`.execute(trx);
            forgetTransactionMemo(trx);
            await sql`release savepoint unit`.execute(trx);
            outcomes.push(() => reject(error));
          }
        }
      });
      if (ended) end(ended);
      for (const settle of outcomes) settle();
    } catch (error) {
      carried = undefined;
      // COMMIT failed (or the connection did): no unit of this batch may be reported as done.
      for (const { reject } of batch) reject(error);
    } finally {
      running = false;
      if (queue.length > 0) request();
    }
  };

  const write = <T>(unit: WriteUnit<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push({ unit, resolve: resolve as (value: unknown) => void, reject });
      request();
    });
  return Object.assign(write, { settled: () => current ?? Promise.resolve() });
}

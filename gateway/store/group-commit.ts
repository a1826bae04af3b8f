// Owns group commit: write units from concurrent requests share one SQLite transaction and one trip to the
// disk, and each unit still commits or rolls back on its own (a savepoint each) and is answered only once
// durable.
import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.ts';

/** A unit of writes that must be atomic and durable before its caller hears back. Use only `trx`, never db. */
export type WriteUnit<T> = (trx: Kysely<Database>) => Promise<T>;
export type Write = <T>(unit: WriteUnit<T>) => Promise<T>;

export interface GroupCommitOptions {
  /**
   * Makes everything committed so far durable, off the event loop's thread (the store passes an fdatasync of
   * the WAL, SQLite itself no longer syncing at COMMIT). Without it, COMMIT is trusted to be durable.
   */
  durable?: () => Promise<void>;
  /** Most units per transaction; the rest wait for the next one. */
  maxBatch?: number;
  /** Schedules a batch; setImmediate by default, so every unit queued in one event-loop turn shares it. */
  schedule?: (run: () => void) => void;
}

interface Queued {
  unit: WriteUnit<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export const DEFAULT_MAX_BATCH = 256;

/**
 * Returns write(unit). One transaction per request would cost one fsync per request, and with SQLite's own
 * synchronous=FULL that fsync blocks the event loop's thread. Here the units queued during one turn of the
 * event loop run one after another inside one transaction, each between SAVEPOINT and RELEASE: a unit that
 * throws is rolled back to its savepoint alone and its caller gets the error; the others commit together.
 * Then `durable()` runs while the connection is still held, so no query of anyone reads data that is not yet
 * on disk, but the event loop keeps serving everything else meanwhile, and the units queued during the wait
 * form the next batch. Callers are answered only after that, so an acknowledged write is as durable as with
 * synchronous=FULL; if COMMIT or durable() fails, every unit of the batch fails.
 */
export function createGroupCommit(db: Kysely<Database>, options: GroupCommitOptions = {}): Write {
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  const schedule = options.schedule ?? ((run) => setImmediate(run));
  let queue: Queued[] = [];
  let scheduled = false;
  let running = false;

  const request = (): void => {
    if (scheduled || running) return;
    scheduled = true;
    schedule(() => {
      scheduled = false;
      void flush();
    });
  };

  const flush = async (): Promise<void> => {
    if (queue.length === 0) return;
    running = true;
    const batch = queue.slice(0, maxBatch);
    queue = queue.slice(batch.length);
    const outcomes: Array<() => void> = [];
    try {
      await db.connection().execute(async (conn) => {
        await sql`begin`.execute(conn);
        try {
          for (const { unit, resolve, reject } of batch) {
            await sql`savepoint unit`.execute(conn);
            try {
              const value = await unit(conn);
              await sql`release savepoint unit`.execute(conn);
              outcomes.push(() => resolve(value));
            } catch (error) {
              // ROLLBACK TO keeps the savepoint on the stack; RELEASE then removes it.
              await sql`rollback to savepoint unit`.execute(conn);
              await sql`release savepoint unit`.execute(conn);
              outcomes.push(() => reject(error));
            }
          }
          await sql`commit`.execute(conn);
        } catch (error) {
          await sql`rollback`.execute(conn).catch(() => undefined);
          throw error;
        }
        await options.durable?.();
      });
      for (const settle of outcomes) settle();
    } catch (error) {
      // COMMIT, or making it durable, failed: no unit of this batch may be reported as done.
      for (const { reject } of batch) reject(error);
    } finally {
      running = false;
      if (queue.length > 0) request();
    }
  };

  return <T>(unit: WriteUnit<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push({ unit, resolve: resolve as (value: unknown) => void, reject });
      request();
    });
}

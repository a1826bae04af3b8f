// Owns opening the store: the dialect chosen by configuration, durability settings, and migrations.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, type LogEvent, Migrator, sql } from 'kysely';
import { DurableSqliteDialect, lazyWalFileSync, watchCommits } from './durable.ts';
import { createGroupCommit, type Write } from './group-commit.ts';
import { migrationProvider } from './migrations.ts';
import type { Database } from './schema.ts';
import { withStatementCache } from './statement-cache.ts';

export type StoreConfig = { kind: 'sqlite'; file: string };

export type QueryKind = 'select' | 'insert' | 'update' | 'delete' | 'raw' | 'other';

/** One finished query, for store latency metrics. */
export interface QueryObservation {
  kind: QueryKind;
  durationMs: number;
  failed: boolean;
}

const KINDS: Record<string, QueryKind> = {
  SelectQueryNode: 'select',
  InsertQueryNode: 'insert',
  UpdateQueryNode: 'update',
  DeleteQueryNode: 'delete',
  RawNode: 'raw',
};

const observation = (event: LogEvent): QueryObservation => ({
  kind: KINDS[event.query.query.kind] ?? 'other',
  durationMs: event.queryDurationMillis,
  failed: event.level === 'error',
});

/**
 * Pages the write-ahead log may hold before a commit copies them into the database file (SQLite's default is
 * 1,000). A checkpoint copies each page once however often it was rewritten since the last one, and the hot pages
 * (the tails of the audit log, the timeline and their indexes) are rewritten by nearly every commit; ten times
 * the default cut the gateway's CPU per unlock+lock cycle by about a tenth in the bench. The log grows to about
 * 40 MB before each checkpoint and is reused from its start afterwards.
 */
export const WAL_CHECKPOINT_PAGES = 10_000;

export interface StoreStats {
  /** fdatasyncs of the write-ahead log: each made the commits before it durable, shared among them. */
  flushes: number;
}

export interface Store {
  db: Kysely<Database>;
  /**
   * Runs a unit of writes atomically and resolves once it is durable; concurrent units share a commit
   * (group-commit.ts). A unit uses only the transaction it is given, never db.
   */
  write: Write;
  /** How the store reached the disk so far (metrics, the bench). */
  stats(): StoreStats;
  /** Proves the store is open and writable (for readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens the SQLite store. Decisions must survive a crash, and a power loss, once acknowledged. SQLite's own
 * way (WAL with synchronous=FULL) calls fsync inside COMMIT, which blocks the event loop for the whole trip to
 * the disk. Here SQLite commits with synchronous=NORMAL (into the write-ahead log, in order, without a sync)
 * and every query that committed is answered only after an fdatasync of the log on the thread pool
 * (durable.ts): as durable as FULL, while other requests run. Writes on the hot paths go through store.write,
 * which shares one COMMIT among the units queued together; concurrent commits share one flush either way.
 */
export async function openStore(
  config: StoreConfig,
  observe?: (query: QueryObservation) => void,
): Promise<Store> {
  mkdirSync(dirname(config.file), { recursive: true });
  const sqlite = new BetterSqlite3(config.file);
  sqlite.pragma('journal_mode = WAL');
  // Durability comes from the flush before each answer (durable.ts); checkpoints still sync in SQLite.
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
  const watched = watchCommits(sqlite);
  const wal = lazyWalFileSync(`${config.file}-wal`);
  const db = new Kysely<Database>({
    dialect: new DurableSqliteDialect({
      database: withStatementCache(watched.database),
      watch: watched.watch,
      wal: wal.get,
    }),
    ...(observe ? { log: (event: LogEvent) => observe(observation(event)) } : {}),
  });
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    await db.destroy();
    wal.close();
    throw new Error(`store migration failed: ${failed?.migrationName ?? String(error)}`);
  }
  return {
    db,
    write: createGroupCommit(db),
    async ping() {
      // A write statement that touches no row still takes the write lock, so a read-only store fails here.
      await sql`update api_keys set label = label where 1 = 0`.execute(db);
    },
    stats: () => ({ flushes: wal.flushes() }),
    async close() {
      await db.destroy();
      wal.close();
    },
  };
}

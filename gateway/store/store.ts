// Owns opening the store: the dialect chosen by configuration, durability settings, and migrations.
import { mkdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, sql } from 'kysely';
import { createGroupCommit, type Write } from './group-commit.ts';
import { migrationProvider } from './migrations.ts';
import type { Database } from './schema.ts';
import { withStatementCache } from './statement-cache.ts';

export type StoreConfig = { kind: 'sqlite'; file: string };

export interface Store {
  db: Kysely<Database>;
  /**
   * Runs a unit of writes atomically and resolves once it is durable; concurrent units share a commit
   * (group-commit.ts). A unit must use only the transaction it is given, never db.
   */
  write: Write;
  /** Proves the store is open and writable (for readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens the SQLite store. Decisions must survive a crash once acknowledged. The journal is WAL; migrations
 * run with synchronous=FULL (fsync at every COMMIT). After them SQLite no longer syncs at COMMIT
 * (synchronous=NORMAL, still crash-consistent) and store.write syncs the WAL itself, from libuv's thread
 * pool, before it answers anyone (group-commit.ts): the same durability for every acknowledged write,
 * without blocking the event loop's thread on the disk. Every write must therefore go through store.write.
 */
export async function openStore(config: StoreConfig): Promise<Store> {
  mkdirSync(dirname(config.file), { recursive: true });
  const sqlite = new BetterSqlite3(config.file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: withStatementCache(sqlite) }),
  });
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    await db.destroy();
    throw new Error(`store migration failed: ${failed?.migrationName ?? String(error)}`);
  }
  // The WAL exists once the database has been read in WAL mode; its file is synced after each batch.
  const wal = await open(`${config.file}-wal`, 'r');
  sqlite.pragma('synchronous = NORMAL');
  return {
    db,
    write: createGroupCommit(db, { durable: () => wal.datasync() }),
    async ping() {
      // A write statement that touches no row still takes the write lock, so a read-only store fails here.
      await sql`update api_keys set label = label where 1 = 0`.execute(db);
    },
    async close() {
      await db.destroy();
      await wal.close();
    },
  };
}

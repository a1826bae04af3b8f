// Owns opening the store: the dialect chosen by configuration, durability settings, and migrations.
import { mkdirSync } from 'node:fs';
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
 * Opens the SQLite store. Decisions must survive a crash once acknowledged, so the journal is WAL with
 * synchronous=FULL (fsync on every commit), not the faster NORMAL.
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
  return {
    db,
    write: createGroupCommit(db),
    async ping() {
      // A write statement that touches no row still takes the write lock, so a read-only store fails here.
      await sql`update api_keys set label = label where 1 = 0`.execute(db);
    },
    close: () => db.destroy(),
  };
}

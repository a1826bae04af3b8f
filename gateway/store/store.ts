// Owns opening the store: the dialect chosen by configuration, durability settings, and migrations.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, type LogEvent, Migrator, sql } from 'kysely';
import pg from 'pg';
import { DurableSqliteDialect, lazyWalFileSync, watchCommits } from './durable.ts';
import { createGroupCommit, type GroupCommit } from './group-commit.ts';
import { migrationProvider } from './migrations.ts';
import { OwnSchemaPostgresDialect } from './pg-introspector.ts';
import type { Database } from './schema.ts';
import { preparePgStatements, withStatementCache } from './statement-cache.ts';

export type StoreConfig =
  | { kind: 'sqlite'; file: string }
  /**
   * `schema`: the PostgreSQL schema the tables live in (search_path); its own per test. Default: public.
   * `poolSize`: connections to the server (DATABASE_POOL_SIZE); default DEFAULT_PG_POOL_SIZE.
   */
  | { kind: 'postgres'; url: string; schema?: string; poolSize?: number };

/** Connections a PostgreSQL store opens unless told otherwise (DATABASE_POOL_SIZE). */
export const DEFAULT_PG_POOL_SIZE = 8;

/** The store a configuration names: PostgreSQL when DATABASE_URL is set, else the SQLite file in DATA_DIR. */
export function storeConfigOf(config: {
  DATA_DIR: string;
  DATABASE_URL?: string | undefined;
  DATABASE_POOL_SIZE?: number | undefined;
}): StoreConfig {
  return config.DATABASE_URL
    ? {
        kind: 'postgres',
        url: config.DATABASE_URL,
        ...(config.DATABASE_POOL_SIZE ? { poolSize: config.DATABASE_POOL_SIZE } : {}),
      }
    : { kind: 'sqlite', file: join(config.DATA_DIR, 'gateway.sqlite') };
}

/** The store could not be opened: one line that names the setting and the cause, never the password. */
export class StoreOpenError extends Error {
  override readonly name = 'StoreOpenError';
}

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
   * (group-commit.ts). A unit uses only the transaction it is given, never db. `write.settled()` waits for the
   * transaction in flight, for what a unit noted to be read after its commit.
   */
  write: GroupCommit;
  /** How the store reached the disk so far (metrics, the bench). */
  stats(): StoreStats;
  /** The migrations this open applied, in order (none when the store was up to date). */
  migrated: readonly string[];
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
  return config.kind === 'postgres' ? openPostgres(config, observe) : openSqlite(config, observe);
}

async function openSqlite(
  config: Extract<StoreConfig, { kind: 'sqlite' }>,
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
  let migrated: string[];
  try {
    migrated = await migrate(db);
  } catch (err) {
    await db.destroy();
    wal.close();
    throw err;
  }
  return {
    db,
    write: createGroupCommit(db, { carryAuditTail: true }),
    migrated,
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

/** Applies every migration not applied yet, in order (migrations.ts); throws naming the one that failed. */
export async function migrate(db: Kysely<Database>, schema?: string): Promise<string[]> {
  const { error, results } = await new Migrator({
    db,
    provider: migrationProvider,
    // The migrations' own tables live in the store's schema: another schema of the same database (another
    // store, or a test's) must not look like this one's history.
    ...(schema ? { migrationTableSchema: schema } : {}),
  }).migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    const cause = error instanceof Error ? error.message : String(error ?? '');
    throw new Error(`store migration failed: ${failed?.migrationName ?? ''} ${cause}`.trim());
  }
  return (results ?? []).map((r) => r.migrationName);
}

/** A URL as it may be shown: without its password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** bigint columns (int8) hold times in ms and counts: JavaScript numbers, as SQLite gives them. */
const PG_TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8
      ? Number
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * Opens the PostgreSQL store, with a pool of connections. Units of work still commit one group at a time (group
 * commit shares one transaction among the units queued together), each taking the audit log's advisory lock, as
 * several replicas do; reads and the replicas' coordination (leases, shared rate limits) run beside it on the other
 * connections instead of queueing behind every statement of the transaction in flight. Each statement is a round
 * trip to the server: with one connection they were the bound (about 19 unlock+lock cycles/s at 10,000 cars in the
 * bench). Commits are durable when they return (synchronous_commit on).
 */
async function openPostgres(
  config: Extract<StoreConfig, { kind: 'postgres' }>,
  observe?: (query: QueryObservation) => void,
): Promise<Store> {
  const where = `DATABASE_URL (${redactUrl(config.url)})`;
  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    throw new StoreOpenError(`DATABASE_URL is not a URL: must be postgres://user@host:port/database`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new StoreOpenError(`DATABASE_URL must be a postgres:// URL, not ${url.protocol}//`);
  }
  const pool = new pg.Pool({
    connectionString: config.url,
    max: config.poolSize ?? DEFAULT_PG_POOL_SIZE,
    // Connections stay open once made: refilling the pool in the middle of a burst would pay a connection setup.
    idleTimeoutMillis: 0,
    connectionTimeoutMillis: 5_000,
    types: PG_TYPES,
    ...(config.schema ? { options: `-c search_path=${config.schema}` } : {}),
  });
  // An idle connection that breaks is replaced on next use; without a listener its error would end the process.
  pool.on('error', () => {});
  const prepared = preparePgStatements(pool);
  let schema: string;
  try {
    const { rows } = await pool.query<{ schema: string | null }>('select current_schema() as schema');
    schema = rows[0]?.schema ?? 'public';
  } catch (err) {
    await pool.end().catch(() => {});
    const cause = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new StoreOpenError(`${where} is unreachable: ${cause}`);
  }
  const db = new Kysely<Database>({
    dialect: new OwnSchemaPostgresDialect({ pool }),
    ...(observe ? { log: (event: LogEvent) => observe(observation(event)) } : {}),
  });
  let migrated: string[];
  try {
    migrated = await migrate(db, schema);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  prepared.start();
  return {
    db,
    write: createGroupCommit(db),
    migrated,
    async ping() {
      await sql`update api_keys set label = label where 1 = 0`.execute(db);
    },
    // Every commit is flushed by the server itself.
    stats: () => ({ flushes: 0 }),
    async close() {
      await db.destroy();
    },
  };
}

// Owns making every commit durable before its caller hears back, without blocking the event loop on the disk:
// SQLite commits into the write-ahead log (synchronous=NORMAL) and the log is flushed with fdatasync on
// libuv's thread pool before the connection's user is answered.
import { closeSync, fdatasync, openSync } from 'node:fs';
import {
  type DatabaseConnection,
  type Driver,
  type QueryCompiler,
  SqliteDialect,
  type SqliteDialectConfig,
  type SqliteStatement,
  type TransactionSettings,
} from 'kysely';

/** Flushes what has been committed so far to the disk. */
export type Flush = () => Promise<void>;

export interface WalSync {
  /**
   * Resolves once everything committed before the call is on the disk. Concurrent callers share flushes: a
   * call made while a flush runs waits for the next one, which all such calls share.
   */
  sync(): Promise<void>;
  /** Flushes started so far (for metrics and the bench). */
  readonly flushes: number;
  close(): void;
}

/**
 * Coalesces flush requests. A flush that is already running may have started before the caller's commit, so
 * the caller waits for the one after it. After a failed flush the store is broken for good: Linux may drop the
 * dirty pages that failed to write and report success on the next fsync, so no later write may be answered as
 * durable (fail closed).
 */
export function createWalSync(flush: Flush, close: () => void = () => {}): WalSync {
  let running: Promise<void> | null = null;
  let queued: Promise<void> | null = null;
  let failure: unknown = null;
  let flushes = 0;

  const start = (): Promise<void> => {
    if (failure) return Promise.reject(failure);
    flushes++;
    const flushing = flush().then(
      () => {
        if (running === flushing) running = null;
      },
      (error: unknown) => {
        failure ??= error;
        if (running === flushing) running = null;
        throw error;
      },
    );
    running = flushing;
    return flushing;
  };

  return {
    sync(): Promise<void> {
      if (failure) return Promise.reject(failure);
      if (!running) return start();
      if (!queued) {
        const after = running.catch(() => {});
        queued = after.then(() => {
          queued = null;
          return running ?? start();
        });
      }
      return queued;
    },
    get flushes() {
      return flushes;
    },
    close,
  };
}

/** fdatasync of the write-ahead log file, on the thread pool. fsync flushes the file, whichever fd names it. */
export function walFileSync(walPath: string): WalSync {
  const fd = openSync(walPath, 'r+');
  const flush: Flush = () =>
    new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())));
  return createWalSync(flush, () => closeSync(fd));
}

/** The log's sync, opened on first use: the log file exists only once the journal mode is WAL. */
export function lazyWalFileSync(walPath: string): { get(): WalSync; flushes(): number; close(): void } {
  let wal: WalSync | null = null;
  return {
    get() {
      wal ??= walFileSync(walPath);
      return wal;
    },
    flushes: () => wal?.flushes ?? 0,
    close: () => wal?.close(),
  };
}

/** A database whose statements report, after each run, whether a transaction was just committed. */
export interface CommitWatch {
  /** True once a statement ran outside a transaction (a COMMIT, or a write in autocommit) since the last take. */
  take(): boolean;
}

interface WatchableDatabase {
  inTransaction: boolean;
  prepare(sql: string): SqliteStatement;
  close(): void;
}

/**
 * Wraps the database so that a statement that may write and leaves no transaction open (COMMIT, ROLLBACK, or a
 * write in autocommit, INSERT … RETURNING included) marks the connection as holding a commit that still needs a
 * flush. Reads never do: statements that return rows and are read-only (better-sqlite3's `readonly`, SQLite's
 * sqlite3_stmt_readonly, which also holds for BEGIN and COMMIT: those return no rows).
 */
export function watchCommits(database: WatchableDatabase): {
  database: WatchableDatabase;
  watch: CommitWatch;
} {
  let committed = false;
  const after = <T>(run: () => T): T => {
    try {
      return run();
    } finally {
      if (!database.inTransaction) committed = true;
    }
  };
  const wrap = (statement: SqliteStatement & { readonly?: boolean }): SqliteStatement => {
    // A query that returns rows and cannot write is a read. COMMIT counts as read-only in SQLite, yet returns none.
    if (statement.reader && statement.readonly === true) return statement;
    return {
      reader: statement.reader,
      all: (parameters) => after(() => statement.all(parameters)),
      // Kysely streams only SELECTs; a stream that wrote would be marked when it ends a transaction.
      iterate: (parameters) => statement.iterate(parameters),
      run: (parameters) => after(() => statement.run(parameters)),
    };
  };
  return {
    database: {
      get inTransaction() {
        return database.inTransaction;
      },
      prepare: (sql) => wrap(database.prepare(sql)),
      close: () => database.close(),
    },
    watch: {
      take() {
        const was = committed;
        committed = false;
        return was;
      },
    },
  };
}

type CompileQuery = QueryCompiler['compileQuery'];

/**
 * A driver that answers the user of a connection only once its commits are durable. The flush is awaited after
 * the connection is released, so other queries run meanwhile and their commits share the next flush.
 */
class DurableDriver implements Driver {
  readonly #inner: Driver;
  readonly #watch: CommitWatch;
  readonly #wal: () => WalSync;

  constructor(inner: Driver, watch: CommitWatch, wal: () => WalSync) {
    this.#inner = inner;
    this.#watch = watch;
    this.#wal = wal;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }
  acquireConnection(): Promise<DatabaseConnection> {
    return this.#inner.acquireConnection();
  }
  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.#inner.beginTransaction(connection, settings);
  }
  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.commitTransaction(connection);
  }
  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.rollbackTransaction(connection);
  }
  savepoint(connection: DatabaseConnection, name: string, compile: CompileQuery): Promise<void> {
    return this.#savepoints().savepoint(connection, name, compile);
  }
  rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: CompileQuery): Promise<void> {
    return this.#savepoints().rollbackToSavepoint(connection, name, compile);
  }
  releaseSavepoint(connection: DatabaseConnection, name: string, compile: CompileQuery): Promise<void> {
    return this.#savepoints().releaseSavepoint(connection, name, compile);
  }
  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    // Taken before the release: once released, the next user's commit must be flushed for that user.
    const mustFlush = this.#watch.take();
    await this.#inner.releaseConnection(connection);
    if (mustFlush) await this.#wal().sync();
  }
  destroy(): Promise<void> {
    return this.#inner.destroy();
  }

  #savepoints(): Required<Pick<Driver, 'savepoint' | 'rollbackToSavepoint' | 'releaseSavepoint'>> {
    const { savepoint, rollbackToSavepoint, releaseSavepoint } = this.#inner;
    if (!savepoint || !rollbackToSavepoint || !releaseSavepoint)
      throw new Error('the driver has no savepoints');
    return {
      savepoint: savepoint.bind(this.#inner),
      rollbackToSavepoint: rollbackToSavepoint.bind(this.#inner),
      releaseSavepoint: releaseSavepoint.bind(this.#inner),
    };
  }
}

/** SQLite through Kysely, every commit flushed before it is acknowledged (see DurableDriver). */
export class DurableSqliteDialect extends SqliteDialect {
  readonly #watch: CommitWatch;
  readonly #wal: () => WalSync;

  constructor(config: SqliteDialectConfig & { watch: CommitWatch; wal: () => WalSync }) {
    super(config);
    this.#watch = config.watch;
    this.#wal = config.wal;
  }

  override createDriver(): Driver {
    return new DurableDriver(super.createDriver(), this.#watch, this.#wal);
  }
}

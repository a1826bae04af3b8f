// Owns re-using prepared SQLite statements: Kysely prepares every query anew, and compiling the same SQL text
// costs SQLite more than running it.
import type { SqliteDatabase, SqliteStatement } from 'kysely';

export const DEFAULT_STATEMENT_CACHE_SIZE = 256;

/**
 * Wraps a database so that prepare(sql) returns the statement already prepared for that text. Kysely binds
 * the parameters on every run, so a statement is safe to re-use; it iterates only when streaming a query,
 * which this store never does. The oldest statement is dropped beyond `capacity` distinct texts.
 */
export function withStatementCache(
  database: SqliteDatabase,
  capacity = DEFAULT_STATEMENT_CACHE_SIZE,
): SqliteDatabase {
  const statements = new Map<string, SqliteStatement>();
  return {
    close: () => database.close(),
    prepare(sql) {
      const cached = statements.get(sql);
      if (cached) return cached;
      const statement = database.prepare(sql);
      statements.set(sql, statement);
      if (statements.size > capacity) {
        const oldest = statements.keys().next().value;
        if (oldest !== undefined) statements.delete(oldest);
      }
      return statement;
    },
  };
}

// Owns building the hot queries once: Kysely writes each query's SQL for the store's dialect the first time it
// runs, and every later run binds new values to that SQL instead of building and compiling the query again.
import type { Compilable, CompiledQuery, Kysely, QueryResult } from 'kysely';
import type { Database } from './schema.ts';

type Db = Kysely<Database>;

/** Stands for the i-th argument while the template is built; never reaches the database. */
class Arg {
  constructor(readonly index: number) {}
}

type Slot = { arg: number } | { value: unknown };

interface Template {
  compiled: CompiledQuery;
  slots: Slot[];
}

export interface PreparedQuery<A extends unknown[], R> {
  (db: Db, ...args: A): Promise<QueryResult<R>>;
  /** The query as it runs for these arguments (what a test compares with the builder's own compile()). */
  compile(db: Db, ...args: A): CompiledQuery<R>;
  /** The builder itself, for the same comparison. */
  build: (db: Db, ...args: A) => Compilable<R>;
}

/** Every prepared query made so far (test/store-prepared.test.ts checks them all). */
// biome-ignore lint/suspicious/noExplicitAny: a registry of queries of every argument and row type.
export const PREPARED_QUERIES: Array<PreparedQuery<any[], unknown>> = [];

/**
 * Wraps a query builder whose shape never depends on its arguments' values: each argument must be used as one
 * bound value (not as a list for IN, a column name or a LIMIT). The SQL is compiled once per dialect (the
 * executor's adapter), with placeholders standing for the arguments; a run fills in the parameters and executes
 * that compiled query on the given db or transaction. test/store-prepared.test.ts checks every prepared query
 * against the builder compiled with real values. The builder takes plain parameters (no defaults, no rest): their
 * count is the query's arity.
 */
export function prepared<A extends unknown[], R>(
  build: (db: Db, ...args: A) => Compilable<R>,
): PreparedQuery<A, R> {
  const templates = new WeakMap<object, Template>();

  const template = (db: Db): Template => {
    const adapter = db.getExecutor().adapter;
    let t = templates.get(adapter);
    if (!t) {
      const placeholders = Array.from({ length: build.length - 1 }, (_, i) => new Arg(i)) as unknown as A;
      const compiled = build(db, ...placeholders).compile();
      const slots = compiled.parameters.map(
        (p): Slot => (p instanceof Arg ? { arg: p.index } : { value: p }),
      );
      t = { compiled, slots };
      templates.set(adapter, t);
    }
    return t;
  };

  const compile = (db: Db, ...args: A): CompiledQuery<R> => {
    const { compiled, slots } = template(db);
    return {
      ...compiled,
      parameters: slots.map((s) => ('arg' in s ? args[s.arg] : s.value)),
    } as CompiledQuery<R>;
  };

  const run = (db: Db, ...args: A): Promise<QueryResult<R>> => db.executeQuery(compile(db, ...args));
  const query = Object.assign(run, { compile, build });
  PREPARED_QUERIES.push(query as unknown as PreparedQuery<unknown[], unknown>);
  return query;
}

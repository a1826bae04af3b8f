// Test harness: a fresh PostgreSQL schema per store, in the machine's test database, dropped afterwards; the
// schemas this process made, so that a file can prove it left none behind.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { StoreConfig } from '../../gateway/store/store.ts';

/** The PostgreSQL the tests use: TEST_DATABASE_URL, or the local server's `test` database (trust auth). */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Every schema freshPgSchema made in this process, in order (dropped or not). */
const made: string[] = [];

/** The schemas this process made so far, dropped or not. */
export function schemasMade(): readonly string[] {
  return [...made];
}

/** Of the given schemas, those that still exist in TEST_DATABASE_URL. */
export async function schemasLeft(schemas: readonly string[]): Promise<string[]> {
  if (schemas.length === 0) return [];
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ nspname: string }>(
      'select nspname from pg_namespace where nspname = any($1::text[]) order by nspname',
      [schemas],
    );
    return rows.map((r) => r.nspname);
  } finally {
    await client.end();
  }
}

/** Creates an empty schema and gives the store configuration that lives in it, and how to drop it. */
export async function freshPgSchema(): Promise<{
  config: StoreConfig & { kind: 'postgres' };
  schema: string;
  drop(): Promise<void>;
}> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    await client.query(`create schema ${schema}`);
    made.push(schema);
  } finally {
    await client.end();
  }
  return {
    schema,
    config: { kind: 'postgres', url: TEST_DATABASE_URL, schema },
    async drop() {
      const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await c.connect();
      try {
        await c.query(`drop schema if exists ${schema} cascade`);
      } finally {
        await c.end();
      }
    },
  };
}

/** TEST_DATABASE_URL with a search_path, as DATABASE_URL (the pg driver passes `options` to the server). */
export function pgUrlWithSchema(schema: string): string {
  const url = new URL(TEST_DATABASE_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return url.toString();
}

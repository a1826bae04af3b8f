// Test harness: a fresh PostgreSQL schema per store, in the machine's test database, dropped afterwards.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { StoreConfig } from '../../gateway/store/store.ts';

/** The PostgreSQL the tests use: TEST_DATABASE_URL, or the local server's `test` database (trust auth). */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Creates an empty schema and gives the store configuration that lives in it, and how to drop it. */
export async function freshPgSchema(): Promise<{
  config: StoreConfig;
  schema: string;
  drop(): Promise<void>;
}> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    await client.query(`create schema ${schema}`);
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

// What Kysely's Migrator learns of a PostgreSQL store (gateway/store/pg-introspector.ts): the tables of the store's
// own schema, never another schema's, so that a schema dropped meanwhile elsewhere in the database cannot fail a start.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../gateway/store/store.ts';
import { freshPgSchema, TEST_DATABASE_URL } from './helpers/pg-schema.ts';

let store: Store;
const drops: Array<() => Promise<void>> = [];
let own = '';

beforeAll(async () => {
  const mine = await freshPgSchema();
  const other = await freshPgSchema();
  drops.push(mine.drop, other.drop);
  own = mine.schema;
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    // Another store's table of the same name, and one this store does not have.
    await client.query(`create table ${other.schema}.deliveries (id text primary key)`);
    await client.query(`create table ${other.schema}.not_ours (id integer)`);
  } finally {
    await client.end();
  }
  store = await openStore(mine.config);
});

afterAll(async () => {
  await store?.close();
  for (const drop of drops) await drop();
});

describe("a PostgreSQL store's introspection", () => {
  it("lists the tables of the store's schema only, the migration tables when asked", async () => {
    const tables = await store.db.introspection.getTables();
    const names = tables.map((t) => t.name);
    expect(names).toContain('deliveries');
    expect(names).toContain('audit_entries');
    expect(names).not.toContain('not_ours');
    expect(names).not.toContain('kysely_migration');
    expect(names.filter((n) => n === 'deliveries')).toHaveLength(1);
    expect(new Set(tables.map((t) => t.schema))).toEqual(new Set([own]));
    const all = (await store.db.introspection.getTables({ withInternalKyselyTables: true })).map(
      (t) => t.name,
    );
    expect(all).toEqual(expect.arrayContaining(['kysely_migration', 'kysely_migration_lock', ...names]));
    expect((await store.db.introspection.getMetadata()).tables.map((t) => t.name)).toEqual(names);
  });

  it('describes the columns as the catalog does', async () => {
    const deliveries = (await store.db.introspection.getTables()).find((t) => t.name === 'deliveries');
    const id = deliveries?.columns.find((c) => c.name === 'id');
    expect(id).toMatchObject({ dataType: 'varchar', isNullable: false, isAutoIncrementing: false });
    const events = (await store.db.introspection.getTables()).find((t) => t.name === 'delivery_events');
    // delivery_events.seq is an identity on PostgreSQL (README "Store").
    expect(events?.columns.find((c) => c.name === 'seq')).toMatchObject({ isAutoIncrementing: true });
  });

  it('lists every schema by name, its own among them', async () => {
    const schemas = (await store.db.introspection.getSchemas()).map((s) => s.name);
    expect(schemas).toContain(own);
    expect(schemas.some((s) => s.startsWith('pg_'))).toBe(false);
  });
});

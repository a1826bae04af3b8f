// The PostgreSQL store (DATABASE_URL): the same migrations and interface as SQLite, `npm run migrate`, and a
// one-line refusal naming the setting when the URL is malformed or the server unreachable.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../gateway/platform/config.ts';
import { appendAudit, auditTreeSize } from '../gateway/store/audit.ts';
import { openStore, StoreOpenError, storeConfigOf } from '../gateway/store/store.ts';
import { appendEvent, timelineOf } from '../gateway/store/timeline.ts';
import { freshPgSchema, pgUrlWithSchema } from './helpers/pg-schema.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const drops: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(drops.splice(0).map((d) => d()));
});

async function schema() {
  const fresh = await freshPgSchema();
  drops.push(fresh.drop);
  return fresh;
}

const migrate = (env: Record<string, string>, args: string[] = []) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'gateway/store/migrate-main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });

describe('PostgreSQL store', () => {
  it('is chosen by DATABASE_URL; SQLite in DATA_DIR otherwise', () => {
    expect(storeConfigOf(parseConfig({ DATA_DIR: '/d' }))).toEqual({
      kind: 'sqlite',
      file: '/d/gateway.sqlite',
    });
    expect(storeConfigOf(parseConfig({ DATABASE_URL: 'postgres://u@h:5432/db' }))).toEqual({
      kind: 'postgres',
      url: 'postgres://u@h:5432/db',
      poolSize: 8,
    });
    expect(
      storeConfigOf(parseConfig({ DATABASE_URL: 'postgres://u@h:5432/db', DATABASE_POOL_SIZE: '2' })),
    ).toMatchObject({ poolSize: 2 });
    expect(() => parseConfig({ DATABASE_POOL_SIZE: '0' })).toThrow(/DATABASE_POOL_SIZE/);
  });

  it('prepares each parameterised statement once per connection, by name, and none during migrations', async () => {
    const { config } = await schema();
    const store = await openStore({ ...config, poolSize: 1 });
    try {
      const named = async (): Promise<string[]> =>
        (
          await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(store.db)
        ).rows.map((r) => r.statement);
      // The migrations ran on this one connection, with parameters (their history), and named nothing.
      expect(await named()).toEqual([]);
      const read = () =>
        store.db
          .selectFrom('api_keys')
          .select('id')
          .where('hash', '=', 'h')
          .where('label', '=', 'x')
          .execute();
      await read();
      await read();
      const statements = await named();
      expect(statements.filter((text) => text.includes('from "api_keys"'))).toHaveLength(1);
      // Statements without parameters (this one, BEGIN, COMMIT) run as they are.
      expect(statements.some((text) => text.includes('pg_prepared_statements'))).toBe(false);
    } finally {
      await store.close();
    }
  });

  it('applies every migration once, into its own schema, and reopens up to date', async () => {
    const { config, schema: name } = await schema();
    const first = await openStore(config);
    try {
      expect(first.migrated.length).toBeGreaterThanOrEqual(6);
      const tables = await first.db
        .selectFrom('information_schema.tables' as never)
        .select('table_name' as never)
        .where('table_schema' as never, '=', name as never)
        .execute();
      expect(tables.map((t) => (t as { table_name: string }).table_name)).toEqual(
        expect.arrayContaining(['vehicles', 'deliveries', 'delivery_events', 'commands', 'audit_entries']),
      );
    } finally {
      await first.close();
    }
    const again = await openStore(config);
    expect(again.migrated).toEqual([]);
    await again.close();
  });

  it("keeps each schema's migration history its own: two stores migrate side by side", async () => {
    const [a, b] = await Promise.all([schema(), schema()]);
    const stores = await Promise.all([openStore(a.config), openStore(b.config)]);
    try {
      expect(stores.map((st) => st.migrated.length)).toEqual([
        stores[0]!.migrated.length,
        stores[0]!.migrated.length,
      ]);
      expect(stores[0]!.migrated.length).toBeGreaterThanOrEqual(6);
    } finally {
      await Promise.all(stores.map((st) => st.close()));
    }
  });

  it('reads bigint columns as numbers and keeps the timeline monotonic, as SQLite does', async () => {
    const { config } = await schema();
    const store = await openStore(config);
    try {
      await store.write(async (trx) => {
        await trx
          .insertInto('vehicles')
          .values({
            vin: '1G1ZE5ST5KF100231',
            make: 'Chevrolet',
            model: 'Malibu',
            year: 2019,
            provider: 'onstar',
            owner_id: 'o',
            consent: 'unlock,lock',
            linked_at: 1_767_268_800_000,
          } as never)
          .execute();
        await trx
          .insertInto('locations')
          .values({
            id: 'l',
            owner_id: 'o',
            label: 'x',
            kind: 'home',
            lat: 1,
            lon: 2,
            radius_m: 50,
            created_at: 1,
          } as never)
          .execute();
        await trx
          .insertInto('deliveries')
          .values({
            id: 'd',
            vin: '1G1ZE5ST5KF100231',
            location_id: 'l',
            driver_id: 'dr',
            package_ids: '[]',
            window_start: 1,
            window_end: 2,
            status: 'scheduled',
            created_at: 1,
            updated_at: 1,
          } as never)
          .execute();
      });
      const entry = (at: number) => ({ at, kind: 'k', outcome: 'info' as const, code: null, detail: {} });
      await store.write((trx) => appendEvent(trx, 'd', entry(1_767_268_800_500)));
      // A decision written after a later one is clamped to it: time never runs backwards along seq.
      await store.write((trx) => appendEvent(trx, 'd', entry(1_767_268_800_100)));
      const timeline = await timelineOf(store.db, 'd');
      expect(timeline.map((e) => e.at)).toEqual([1_767_268_800_500, 1_767_268_800_500]);
      expect(typeof timeline[0]!.seq).toBe('number');
      await store.write((trx) => appendAudit(trx, { ...entry(5), deliveryId: null }));
      // Two timeline events and one entry of their own: three entries.
      expect(await auditTreeSize(store.db)).toBe(3);
    } finally {
      await store.close();
    }
  });

  it('refuses a malformed or unreachable DATABASE_URL in one line that names it, without the password', async () => {
    await expect(openStore({ kind: 'postgres', url: 'not a url' })).rejects.toThrow(
      /^DATABASE_URL is not a URL/,
    );
    const unreachable = openStore({ kind: 'postgres', url: 'postgres://u:hunter2@127.0.0.1:1/test' });
    await expect(unreachable).rejects.toBeInstanceOf(StoreOpenError);
    await expect(unreachable).rejects.toThrow(
      /^DATABASE_URL \(postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/test\) is unreachable: /,
    );
    await expect(unreachable).rejects.not.toThrow(/hunter2/);
  });

  // Six runs of a program: slow on a loaded machine, so a longer bound than the default.
  it('npm run migrate applies the migrations, then says the store is up to date; refusals are one line', async () => {
    const { schema: name } = await schema();
    const env = { DATABASE_URL: pgUrlWithSchema(name) };
    const first = migrate(env);
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(
      /^migrate: applied 0001_initial, (\d{4}_[a-z_]+, )*0011_replicas to postgres:\/\//m,
    );
    const second = migrate(env);
    expect(second.status).toBe(0);
    expect(second.stdout).toMatch(/is up to date$/m);

    const down = migrate({ DATABASE_URL: 'postgres://u:hunter2@127.0.0.1:1/test' });
    expect(down.status).toBe(1);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toMatch(
      /^migrate: DATABASE_URL \(postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/test\) is unreachable/,
    );
    const wrong = migrate({ DATABASE_URL: 'mysql://u:hunter2@h/x' });
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toMatch(/DATABASE_URL="mysql:\/\/u:\*\*\*@h\/x".*must be a postgres:\/\//);
    expect(`${down.stderr}${wrong.stderr}`).not.toContain('hunter2');
    const bad = migrate(env, ['--bogus']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^migrate: Unknown option '--bogus'/);
    expect(migrate(env, ['--help']).stdout).toMatch(/^npm run migrate: /);
  }, 120_000);
});

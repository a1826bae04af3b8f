// Test harness: a real store, on a fresh SQLite file in a temp dir or a fresh PostgreSQL schema, opened before
// and removed after; the dialect of the run (the vitest project's).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { openStore, type Store, type StoreConfig } from '../../gateway/store/store.ts';
import { freshPgSchema, pgUrlWithSchema } from './pg-schema.ts';

/** The store dialects every store test runs on. */
export const DIALECTS = ['sqlite', 'postgres'] as const;
export type Dialect = (typeof DIALECTS)[number];

/**
 * The dialect this run's store tests use: STORE_DIALECT, which vitest.config.ts sets per project (`sqlite`,
 * `postgres`); sqlite when unset. Anything else is refused rather than taken as sqlite.
 */
export function testDialect(): Dialect {
  const value = process.env.STORE_DIALECT ?? 'sqlite';
  if (value !== 'sqlite' && value !== 'postgres')
    throw new Error(`STORE_DIALECT must be sqlite or postgres, not ${JSON.stringify(value)}`);
  return value;
}

/** A store for a program the test starts (a child gateway, a CLI) and opens again itself. */
export interface ScratchStore {
  dialect: Dialect;
  /** The program's settings for it: DATA_DIR always, DATABASE_URL (with the schema) on PostgreSQL. */
  env: { DATA_DIR: string; DATABASE_URL?: string };
  /** The same store, for openStore. */
  config: StoreConfig;
  /** Opens it in the test's process (to read what the program left, or to prepare it). */
  open(): Promise<Store>;
  /** Drops its PostgreSQL schema (the caller removes its folders). */
  drop(): Promise<void>;
}

/**
 * The store a program with DATA_DIR `dataDir` uses on this run's dialect: the SQLite file the gateway keeps in
 * DATA_DIR, or a fresh PostgreSQL schema named by DATABASE_URL.
 */
export async function scratchStore(dataDir: string, dialect: Dialect = testDialect()): Promise<ScratchStore> {
  if (dialect === 'sqlite') {
    const config: StoreConfig = { kind: 'sqlite', file: join(dataDir, 'gateway.sqlite') };
    return {
      dialect,
      env: { DATA_DIR: dataDir },
      config,
      open: () => openStore(config),
      drop: async () => {},
    };
  }
  const fresh = await freshPgSchema();
  return {
    dialect,
    env: { DATA_DIR: dataDir, DATABASE_URL: pgUrlWithSchema(fresh.schema) },
    config: fresh.config,
    open: () => openStore(fresh.config),
    drop: fresh.drop,
  };
}

/**
 * Opens a store before each test (`each`) or once for the file (`all`), closes it and removes its folder after.
 * Gives the store of the running test, and its file (to open it again).
 */
export function useTempStore(
  prefix: string,
  scope: 'each' | 'all' = 'each',
  dialect: Dialect = testDialect(),
): { store: () => Store; file: () => string; config: () => StoreConfig } {
  let dir = '';
  let store: Store | null = null;
  let config: StoreConfig | null = null;
  let drop: (() => Promise<void>) | null = null;
  const [before, after] = scope === 'each' ? [beforeEach, afterEach] : [beforeAll, afterAll];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    let opening: StoreConfig = { kind: 'sqlite', file: join(dir, 'g.sqlite') };
    if (dialect === 'postgres') {
      const fresh = await freshPgSchema();
      opening = fresh.config;
      drop = fresh.drop;
    }
    config = opening;
    store = await openStore(opening);
  });
  after(async () => {
    await store?.close();
    store = null;
    await drop?.();
    drop = null;
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    store: () => {
      if (!store) throw new Error('the temp store is open only while a test runs');
      return store;
    },
    file: () => join(dir, 'g.sqlite'),
    config: () => {
      if (!config) throw new Error('the temp store is open only while a test runs');
      return config;
    },
  };
}

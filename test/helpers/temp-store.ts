// Test harness: a real store, on a fresh SQLite file in a temp dir or a fresh PostgreSQL schema, opened before
// and removed after.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { openStore, type Store, type StoreConfig } from '../../gateway/store/store.ts';
import { freshPgSchema } from './pg-schema.ts';

/** The store dialects every store test runs on. */
export const DIALECTS = ['sqlite', 'postgres'] as const;
export type Dialect = (typeof DIALECTS)[number];

/**
 * Opens a store before each test (`each`) or once for the file (`all`), closes it and removes its folder after.
 * Gives the store of the running test, and its file (to open it again).
 */
export function useTempStore(
  prefix: string,
  scope: 'each' | 'all' = 'each',
  dialect: Dialect = 'sqlite',
): { store: () => Store; file: () => string; config: () => StoreConfig } {
  let dir = '';
  let store: Store | null = null;
  let config: StoreConfig | null = null;
  let drop: (() => Promise<void>) | null = null;
  const [before, after] = scope === 'each' ? [beforeEach, afterEach] : [beforeAll, afterAll];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    if (dialect === 'postgres') {
      const fresh = await freshPgSchema();
      config = fresh.config;
      drop = fresh.drop;
    } else {
      config = { kind: 'sqlite', file: join(dir, 'g.sqlite') };
    }
    store = await openStore(config);
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

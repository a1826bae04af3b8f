// Test harness: a real store on a fresh SQLite file in a temp dir, opened before and removed after.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { openStore, type Store } from '../../gateway/store/store.ts';

/**
 * Opens a store before each test (`each`) or once for the file (`all`), closes it and removes its folder after.
 * Gives the store of the running test, and its file (to open it again).
 */
export function useTempStore(
  prefix: string,
  scope: 'each' | 'all' = 'each',
): { store: () => Store; file: () => string } {
  let dir = '';
  let store: Store | null = null;
  const [before, after] = scope === 'each' ? [beforeEach, afterEach] : [beforeAll, afterAll];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    store = await openStore({ kind: 'sqlite', file: join(dir, 'g.sqlite') });
  });
  after(async () => {
    await store?.close();
    store = null;
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    store: () => {
      if (!store) throw new Error('the temp store is open only while a test runs');
      return store;
    },
    file: () => join(dir, 'g.sqlite'),
  };
}

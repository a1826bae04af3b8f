// The store's write path: group commit (units share a transaction and one sync, yet commit or fail on their
// own, and nobody hears back or reads before the sync) and the prepared-statement cache.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createGroupCommit } from '../gateway/store/group-commit.ts';
import { insertApiKey } from '../gateway/store/records.ts';
import { withStatementCache } from '../gateway/store/statement-cache.ts';
import { openStore, type Store } from '../gateway/store/store.ts';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'store-writes-'));
  store = await openStore({ kind: 'sqlite', file: join(dir, 'g.sqlite') });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const key = (id: string) => ({ id, hash: `hash-${id}`, label: id, createdAt: 1 });
const ids = async (): Promise<string[]> =>
  (await store.db.selectFrom('api_keys').select('id').orderBy('id').execute()).map((r) => r.id);
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A write() whose batches run only when drain() lets them, so the test decides what is queued together, and
 * whose syncs are counted and can be held back or failed.
 */
function manual(options: { maxBatch?: number; durable?: () => Promise<void> } = {}) {
  const runs: Array<() => void> = [];
  const durable = vi.fn(options.durable ?? (async () => undefined));
  const write = createGroupCommit(store.db, {
    durable,
    schedule: (run) => runs.push(run),
    ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
  });
  /** Runs scheduled batches until every unit given has settled. */
  const drain = async (units: Array<Promise<unknown>>): Promise<void> => {
    let settled = false;
    void Promise.allSettled(units).then(() => {
      settled = true;
    });
    while (!settled) {
      runs.shift()?.();
      await turn();
    }
  };
  return { write, drain, durable, runs };
}

describe('group commit', () => {
  it('runs the units queued together in one transaction and one sync, in order, each seeing the ones before', async () => {
    const { write, drain, durable } = manual();
    const seen: number[] = [];
    const units = ['a', 'b', 'c'].map((id) =>
      write(async (trx) => {
        seen.push((await trx.selectFrom('api_keys').select('id').execute()).length);
        await insertApiKey(trx, key(id));
        return id;
      }),
    );
    await drain(units);
    expect(await Promise.all(units)).toEqual(['a', 'b', 'c']);
    expect(seen).toEqual([0, 1, 2]);
    expect(durable).toHaveBeenCalledTimes(1);
    expect(await ids()).toEqual(['a', 'b', 'c']);
  });

  it('rolls back a failing unit alone and gives its caller the error', async () => {
    const { write, drain } = manual();
    const units = [
      write((trx) => insertApiKey(trx, key('a'))),
      write(async (trx) => {
        await insertApiKey(trx, key('b'));
        throw new Error('refused');
      }),
      write((trx) => insertApiKey(trx, key('a'))),
      write((trx) => insertApiKey(trx, key('c'))),
    ];
    await drain(units);
    const outcomes = await Promise.allSettled(units);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    await expect(units[1]).rejects.toThrow('refused');
    expect(await ids()).toEqual(['a', 'c']);
  });

  it('answers nobody, and lets nobody read, until the batch is on disk', async () => {
    let synced: () => void = () => undefined;
    const { write, runs } = manual({ durable: () => new Promise<void>((resolve) => (synced = resolve)) });
    let answered = false;
    const unit = write((trx) => insertApiKey(trx, key('a'))).then(() => {
      answered = true;
    });
    runs.shift()?.();
    for (let i = 0; i < 5; i++) await turn();
    let read: string[] | null = null;
    const reading = ids().then((r) => {
      read = r;
    });
    for (let i = 0; i < 5; i++) await turn();
    expect(answered).toBe(false);
    expect(read).toBeNull();
    synced();
    await unit;
    await reading;
    expect(read).toEqual(['a']);
  });

  it('fails every unit of a batch whose sync fails', async () => {
    const { write, drain } = manual({
      durable: async () => {
        throw new Error('EIO: i/o error, fdatasync');
      },
    });
    const units = ['a', 'b'].map((id) => write((trx) => insertApiKey(trx, key(id))));
    await drain(units);
    const outcomes = await Promise.allSettled(units);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    await expect(units[0]).rejects.toThrow('fdatasync');
  });

  it('splits a long queue into batches of at most maxBatch', async () => {
    const { write, drain, durable } = manual({ maxBatch: 2 });
    const units = ['a', 'b', 'c', 'd', 'e'].map((id) => write((trx) => insertApiKey(trx, key(id))));
    await drain(units);
    await Promise.all(units);
    expect(durable).toHaveBeenCalledTimes(3);
    expect(await ids()).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('is what store.write uses, syncing the WAL after each batch', async () => {
    await Promise.all(['x', 'y'].map((id) => store.write((trx) => insertApiKey(trx, key(id)))));
    expect(await ids()).toEqual(['x', 'y']);
    const reopened = await openStore({ kind: 'sqlite', file: join(dir, 'g.sqlite') });
    try {
      expect(
        (await reopened.db.selectFrom('api_keys').select('id').orderBy('id').execute()).map((r) => r.id),
      ).toEqual(['x', 'y']);
    } finally {
      await reopened.close();
    }
  });
});

describe('statement cache', () => {
  it('prepares each SQL text once and drops the oldest beyond its capacity', () => {
    const prepared: string[] = [];
    const database = {
      close: vi.fn(),
      prepare: (sql: string) => {
        prepared.push(sql);
        return {
          reader: true,
          all: () => [sql],
          run: () => ({ changes: 0, lastInsertRowid: 0 }),
          iterate: () => [][Symbol.iterator](),
        };
      },
    };
    const cached = withStatementCache(database, 2);
    expect(cached.prepare('a')).toBe(cached.prepare('a'));
    cached.prepare('b');
    cached.prepare('c');
    cached.prepare('a');
    expect(prepared).toEqual(['a', 'b', 'c', 'a']);
    cached.close();
    expect(database.close).toHaveBeenCalledOnce();
  });

  it('serves the store: repeated queries return fresh results', async () => {
    for (const id of ['a', 'b']) {
      await store.write((trx) => insertApiKey(trx, key(id)));
      expect((await ids()).at(-1)).toBe(id);
    }
  });
});

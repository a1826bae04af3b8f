// The store's write path: group commit (units share a transaction, yet commit or fail on their own) and
// the prepared-statement cache.
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
  dir = mkdtempSync(join(tmpdir(), 'group-commit-'));
  store = await openStore({ kind: 'sqlite', file: join(dir, 'g.sqlite') });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const key = (id: string) => ({ id, hash: `hash-${id}`, label: id, createdAt: 1 });
const ids = async (): Promise<string[]> =>
  (await store.db.selectFrom('api_keys').select('id').orderBy('id').execute()).map((r) => r.id);

/** A write() whose batches run only when drain() lets them, so the test decides what is queued together. */
function manual(maxBatch?: number) {
  const runs: Array<() => void> = [];
  const write = createGroupCommit(store.db, {
    schedule: (run) => runs.push(run),
    ...(maxBatch === undefined ? {} : { maxBatch }),
  });
  /** Runs scheduled batches until every unit given has settled. */
  const drain = async (units: Array<Promise<unknown>>): Promise<void> => {
    let settled = false;
    void Promise.allSettled(units).then(() => {
      settled = true;
    });
    while (!settled) {
      runs.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { write, drain };
}

describe('group commit', () => {
  it('runs the units queued together in one transaction, in order, each seeing the ones before', async () => {
    const transactions = vi.spyOn(store.db, 'transaction');
    const { write, drain } = manual();
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
    expect(transactions).toHaveBeenCalledTimes(1);
    expect(await ids()).toEqual(['a', 'b', 'c']);
  });

  it('rolls back a failing unit alone and gives its caller the error', async () => {
    const { write, drain } = manual();
    const ok1 = write((trx) => insertApiKey(trx, key('a')));
    const bad = write(async (trx) => {
      await insertApiKey(trx, key('b'));
      throw new Error('refused');
    });
    const duplicate = write((trx) => insertApiKey(trx, key('a')));
    const ok2 = write((trx) => insertApiKey(trx, key('c')));
    const outcomes = Promise.allSettled([ok1, bad, duplicate, ok2]);
    await drain([ok1, bad, duplicate, ok2]);
    expect((await outcomes).map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    await expect(bad).rejects.toThrow('refused');
    expect(await ids()).toEqual(['a', 'c']);
  });

  it('answers no caller before the commit, and fails every unit of a batch whose commit fails', async () => {
    const { write, drain } = manual();
    let answered = false;
    const units = ['a', 'b'].map((id) =>
      write((trx) => insertApiKey(trx, key(id))).then(() => {
        answered = true;
      }),
    );
    // The units run in a real transaction, which then fails the way a COMMIT that hits a disk error does.
    vi.spyOn(store.db, 'transaction').mockImplementationOnce(
      () =>
        ({
          execute: (unitsOfBatch: Parameters<ReturnType<Store['db']['transaction']>['execute']>[0]) =>
            store.db.transaction().execute(async (trx) => {
              await unitsOfBatch(trx);
              expect(answered).toBe(false);
              throw new Error('disk I/O error');
            }),
        }) as never,
    );
    await drain(units);
    expect((await Promise.allSettled(units)).map((o) => o.status)).toEqual(['rejected', 'rejected']);
    await expect(units[0]).rejects.toThrow('disk I/O error');
    expect(answered).toBe(false);
    expect(await ids()).toEqual([]);
  });

  it('splits a long queue into batches of at most maxBatch', async () => {
    const transactions = vi.spyOn(store.db, 'transaction');
    const { write, drain } = manual(2);
    const units = ['a', 'b', 'c', 'd', 'e'].map((id) => write((trx) => insertApiKey(trx, key(id))));
    await drain(units);
    await Promise.all(units);
    expect(transactions).toHaveBeenCalledTimes(3);
    expect(await ids()).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('is what store.write uses, with the default scheduling', async () => {
    await Promise.all(['x', 'y'].map((id) => store.write((trx) => insertApiKey(trx, key(id)))));
    expect(await ids()).toEqual(['x', 'y']);
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

import { beforeEach, describe, expect, it, vi } from 'vitest';
import { insertApiKey } from '../gateway/store/api-keys.ts';
import { appendAudit, auditTreeSize, readAuditEntries } from '../gateway/store/audit.ts';
import { createGroupCommit } from '../gateway/store/group-commit.ts';
import { withStatementCache } from '../gateway/store/statement-cache.ts';
import { openStore, type Store } from '../gateway/store/store.ts';
import { DIALECTS, type Dialect, useTempStore } from './helpers/temp-store.ts';

let store: Store;
/** Opens a fresh store of this dialect before each test of the enclosing describe. */
function useStore(dialect: Dialect) {
  const temp = useTempStore('store-writes-', 'each', dialect);
  beforeEach(() => {
    store = temp.store();
  });
  return temp;
}

const key = (id: string) => ({ id, hash: `hash-${id}`, label: id, createdAt: 1 });
const ids = async (): Promise<string[]> =>
  (await store.db.selectFrom('api_keys').select('id').orderBy('id').execute()).map((r) => r.id);
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const audited = (kind: string) => ({
  at: 1,
  kind,
  outcome: 'info' as const,
  code: null,
  deliveryId: null,
  detail: {},
});

/**
 * A write() whose batches run only when drain() lets them, so the test decides what is queued together, and
 * whose COMMITs are counted.
 */
function manual(options: { maxBatch?: number } = {}) {
  const runs: Array<() => void> = [];
  const write = createGroupCommit(store.db, {
    schedule: (run) => runs.push(run),
    ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
  });
  // Each scheduled run is one batch: one transaction, one COMMIT.
  let commitCount = 0;
  const commits = (): number => commitCount;
  /** Runs scheduled batches until every unit given has settled. */
  const drain = async (units: Array<Promise<unknown>>): Promise<void> => {
    let settled = false;
    void Promise.allSettled(units).then(() => {
      settled = true;
    });
    while (!settled) {
      const run = runs.shift();
      if (run) {
        commitCount++;
        run();
      }
      await turn();
    }
  };
  return { write, drain, commits, runs };
}

describe.each(DIALECTS)('group commit on %s', (dialect) => {
  const temp = useStore(dialect);

  it('runs the units queued together in one transaction, in order, each seeing the ones before', async () => {
    const { write, drain, commits } = manual();
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
    expect(commits()).toBe(1);
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

  it("keeps each audit append in its unit's savepoint: a refused unit leaves no entry and no gap", async () => {
    const { write, drain } = manual();
    const units = [
      write(async (trx) => {
        expect(trx.isTransaction).toBe(true);
        await insertApiKey(trx, key('a'));
        await appendAudit(trx, audited('first'));
      }),
      write(async (trx) => {
        await insertApiKey(trx, key('b'));
        await appendAudit(trx, audited('refused'));
        throw new Error('refused');
      }),
      write(async (trx) => {
        await insertApiKey(trx, key('c'));
        await appendAudit(trx, audited('second'));
      }),
    ];
    await drain(units);
    await Promise.allSettled(units);
    expect(await ids()).toEqual(['a', 'c']);
    expect(await auditTreeSize(store.db)).toBe(2);
    const entries = await readAuditEntries(store.db, 0, 2);
    expect(entries.map((e) => [e.index, e.kind])).toEqual([
      [0, 'first'],
      [1, 'second'],
    ]);
  });

  it('answers nobody until the batch has committed, and settled() waits for it', async () => {
    const { write, runs } = manual();
    // Nothing in flight: nothing to wait for.
    await write.settled();
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let answered = false;
    const first = write((trx) => insertApiKey(trx, key('a'))).then(() => {
      answered = true;
    });
    const second = write(async (trx) => {
      await insertApiKey(trx, key('b'));
      await held;
    });
    runs.shift()?.();
    for (let i = 0; i < 5; i++) await turn();
    // What a unit noted (a console frame, a webhook) is read after settled(): it must see the whole batch.
    let read: string[] | null = null;
    const reading = write.settled().then(async () => {
      read = await ids();
    });
    for (let i = 0; i < 5; i++) await turn();
    expect(answered).toBe(false);
    expect(read).toBeNull();
    release();
    await Promise.all([first, second, reading]);
    expect(read).toEqual(['a', 'b']);
  });

  it('splits a long queue into batches of at most maxBatch', async () => {
    const { write, drain, commits } = manual({ maxBatch: 2 });
    const units = ['a', 'b', 'c', 'd', 'e'].map((id) => write((trx) => insertApiKey(trx, key(id))));
    await drain(units);
    await Promise.all(units);
    expect(commits()).toBe(3);
    expect(await ids()).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('is what store.write uses, and what it committed is there after a reopen', async () => {
    await Promise.all(['x', 'y'].map((id) => store.write((trx) => insertApiKey(trx, key(id)))));
    expect(await ids()).toEqual(['x', 'y']);
    const reopened = await openStore(temp.config());
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
  useStore('sqlite');

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

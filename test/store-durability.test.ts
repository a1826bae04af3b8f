// Durability without blocking the event loop (gateway/store/durable.ts): SQLite commits into the write-ahead log,
// and nobody hears back about a commit before a flush that started after it has finished.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendAudit, auditLeafHashes, readAuditEntries } from '../gateway/store/audit.ts';
import { createWalSync, DurableSqliteDialect, watchCommits } from '../gateway/store/durable.ts';
import { transactionMemo } from '../gateway/store/transaction-memo.ts';
import { entryLeafHash } from '../protocols/audit/index.ts';
import { useTempStore } from './helpers/temp-store.ts';

/** A flush the test completes by hand, counting how many were started. */
function gatedFlush() {
  const pending: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  return {
    started: () => pending.length,
    flush: () => new Promise<void>((resolve, reject) => pending.push({ resolve, reject })),
    finish(i: number) {
      pending[i]?.resolve();
    },
    fail(i: number, error: Error) {
      pending[i]?.reject(error);
    },
  };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Resolves to whether the promise settled within a few event-loop turns. */
async function settledSoon(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void p.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  for (let i = 0; i < 5; i++) await turn();
  return settled;
}

describe('WAL sync (pure logic)', () => {
  it('a caller that arrives while a flush runs waits for the next flush, which later callers share', async () => {
    const gate = gatedFlush();
    const wal = createWalSync(gate.flush);
    const first = wal.sync();
    expect(gate.started()).toBe(1);
    // These committed after the running flush began: it may not cover them.
    const second = wal.sync();
    const third = wal.sync();
    expect(gate.started()).toBe(1);
    gate.finish(0);
    expect(await settledSoon(first)).toBe(true);
    expect(await settledSoon(second)).toBe(false);
    expect(gate.started()).toBe(2);
    gate.finish(1);
    expect(await settledSoon(Promise.all([second, third]))).toBe(true);
    expect(wal.flushes).toBe(2);
  });

  it('after a failed flush every later sync fails too (fail closed: the lost pages may never reach the disk)', async () => {
    const gate = gatedFlush();
    const wal = createWalSync(gate.flush);
    const first = wal.sync();
    const queued = wal.sync();
    gate.fail(0, new Error('EIO'));
    await expect(first).rejects.toThrow('EIO');
    await expect(queued).rejects.toThrow('EIO');
    await expect(wal.sync()).rejects.toThrow('EIO');
    expect(gate.started()).toBe(1);
  });
});

describe('the durable driver, on a real SQLite file', () => {
  let dir: string;
  let db: Kysely<{ t: { id: number; v: string } }>;
  let gate: ReturnType<typeof gatedFlush>;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'durable-'));
    const sqlite = new BetterSqlite3(join(dir, 'd.sqlite'));
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.exec('create table t (id integer primary key, v text not null)');
    gate = gatedFlush();
    const wal = createWalSync(gate.flush);
    const watched = watchCommits(sqlite);
    db = new Kysely({
      dialect: new DurableSqliteDialect({ database: watched.database, watch: watched.watch, wal: () => wal }),
    });
  });
  afterEach(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers a write in autocommit only after the flush, while reads go on meanwhile', async () => {
    const insert = db.insertInto('t').values({ id: 1, v: 'a' }).execute();
    expect(await settledSoon(insert)).toBe(false);
    expect(gate.started()).toBe(1);
    // The connection was released before the flush: a read runs, sees the commit, and needs no flush.
    expect(await db.selectFrom('t').select('v').execute()).toEqual([{ v: 'a' }]);
    expect(gate.started()).toBe(1);
    gate.finish(0);
    expect(await settledSoon(insert)).toBe(true);
  });

  it('answers a transaction only after the flush that follows its COMMIT', async () => {
    const trx = db.transaction().execute(async (t) => {
      await t.insertInto('t').values({ id: 1, v: 'a' }).execute();
      await t.insertInto('t').values({ id: 2, v: 'b' }).execute();
    });
    expect(await settledSoon(trx)).toBe(false);
    expect(gate.started()).toBe(1);
    gate.finish(0);
    expect(await settledSoon(trx)).toBe(true);
  });

  it('a failed flush fails the write it was to make durable', async () => {
    const insert = db.insertInto('t').values({ id: 1, v: 'a' }).execute();
    await turn();
    gate.fail(0, new Error('EIO'));
    await expect(insert).rejects.toThrow('EIO');
    await expect(db.insertInto('t').values({ id: 2, v: 'b' }).execute()).rejects.toThrow('EIO');
  });

  it('counts INSERT … RETURNING in autocommit as a write (it returns rows, yet it commits)', async () => {
    const insert = db.insertInto('t').values({ id: 1, v: 'a' }).returning('id').execute();
    expect(await settledSoon(insert)).toBe(false);
    expect(gate.started()).toBe(1);
    gate.finish(0);
    expect(await insert).toEqual([{ id: 1 }]);
  });

  it('a read alone never waits for a flush', async () => {
    expect(await db.selectFrom('t').selectAll().execute()).toEqual([]);
    expect(gate.started()).toBe(0);
  });
});

describe('the store (real file, real fdatasync)', () => {
  const temp = useTempStore('durable-store-', 'each', 'sqlite');

  it('flushes the log for writes, in units and in autocommit, and not for reads', async () => {
    const store = temp.store();
    const before = store.stats().flushes;
    await store.db.selectFrom('api_keys').selectAll().execute();
    expect(store.stats().flushes).toBe(before);
    await store.db
      .insertInto('api_keys')
      .values({ id: 'k1', hash: 'h1', label: 'one', created_at: 1 })
      .execute();
    expect(store.stats().flushes).toBe(before + 1);
    await store.write((trx) =>
      trx.insertInto('api_keys').values({ id: 'k2', hash: 'h2', label: 'two', created_at: 1 }).execute(),
    );
    expect(store.stats().flushes).toBe(before + 2);
  });

  it('appends in one transaction chain on the tail the transaction remembers, and a rolled-back unit is forgotten', async () => {
    const store = temp.store();
    const input = (kind: string) => ({
      at: 1,
      kind,
      outcome: 'info' as const,
      code: null,
      deliveryId: null,
      detail: {},
    });
    await store.write(async (trx) => {
      await appendAudit(trx, input('first'));
      await appendAudit(trx, input('second'));
      expect(transactionMemo(trx).has('audit.tail')).toBe(true);
    });
    // A unit rolled back after appending, beside one that commits: the next append must not build on it.
    const failed = store.write(async (trx) => {
      await appendAudit(trx, input('rolled_back'));
      throw new Error('refused');
    });
    const kept = store.write((trx) => appendAudit(trx, input('third')));
    await expect(failed).rejects.toThrow('refused');
    expect((await kept).index).toBe(2);
    const entries = await readAuditEntries(store.db, 0, 3);
    expect(entries.map((e) => e.kind)).toEqual(['first', 'second', 'third']);
    const leaves = await auditLeafHashes(store.db, 3);
    expect(entries.map((e) => entryLeafHash(e).toString('base64'))).toEqual(
      leaves.map((l) => l.toString('base64')),
    );
    // Each entry names the one before it.
    expect(entries.slice(1).map((e) => e.prev)).toEqual(leaves.slice(0, 2).map((l) => l.toString('base64')));
  });
});

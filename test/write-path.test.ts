// The lean write path (issue 14): the timeline as a view of the audit log (and its upgrade from the table it had),
// the audit tail carried between SQLite transactions, appends from several stores on one PostgreSQL database, and
// state reports written only when they change something.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { appendAudit, auditLeafHashes, queueAudit, readAuditEntries } from '../gateway/store/audit.ts';
import { insertDelivery } from '../gateway/store/deliveries.ts';
import { migrationProvider } from '../gateway/store/migrations.ts';
import type { Database } from '../gateway/store/schema.ts';
import { openStore, type Store } from '../gateway/store/store.ts';
import { appendEvent, timelineOf } from '../gateway/store/timeline.ts';
import { type ReportedState, reportChanges, type VehicleRecord } from '../gateway/store/vehicles.ts';
import { leafHash } from '../protocols/audit/index.ts';
import { freshPgSchema } from './helpers/pg-schema.ts';
import { countStatements, type Tally } from './helpers/statement-count.ts';

const dirs: string[] = [];
const opened: Store[] = [];
const drops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  for (const drop of drops.splice(0)) await drop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const tempFile = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'write-path-'));
  dirs.push(dir);
  return join(dir, 'g.sqlite');
};

const delivery = (id: string) => ({
  id,
  vin: '1G1ZE5ST5KF100231',
  locationId: 'loc_1',
  driverId: 'driver-7',
  packageIds: ['pkg-1'],
  windowStart: 1,
  windowEnd: 2,
  status: 'scheduled' as const,
  unlocksUsed: 0,
  createdAt: 1,
  updatedAt: 1,
  blocked: false,
  parking: null,
  unlockedAt: null,
  unlockedCarAt: null,
  relockedAt: null,
  relockRetryAt: null,
  lockUnconfirmedAt: null,
});

const event = (at: number, kind: string) => ({
  at,
  kind,
  outcome: 'info' as const,
  code: null,
  detail: { at },
});

/** The log is one chain: entry i names entry i-1's leaf hash, and the stored leaf hashes are those of the entries. */
async function expectOneChain(store: Store, size: number): Promise<void> {
  const entries = await readAuditEntries(store.db, 0, size);
  const rows = await store.db.selectFrom('audit_entries').select(['idx', 'entry']).orderBy('idx').execute();
  expect(rows.map((r) => Number(r.idx))).toEqual([...Array(size).keys()]);
  const leaves = await auditLeafHashes(store.db, size);
  rows.forEach((r, i) => {
    expect(leaves[i]).toEqual(leafHash(Buffer.from(r.entry, 'utf8')));
    expect(entries[i]?.prev).toBe(i === 0 ? null : (leaves[i - 1] as Buffer).toString('base64'));
  });
}

describe('the timeline as a view of the audit log', () => {
  it('a store upgraded from the timeline table shows its old rows first, then the log, seq still growing', async () => {
    const file = tempFile();
    // The store as it was before migration 0010: each event written to delivery_events and to the log.
    const sqlite = new BetterSqlite3(file);
    // The delivery's vehicle and location are beside the point here.
    sqlite.pragma('foreign_keys = OFF');
    const old = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
    const { error } = await new Migrator({ db: old, provider: migrationProvider }).migrateTo(
      '0009_deliveries_expiry',
    );
    expect(error).toBeUndefined();
    await insertDelivery(old, delivery('dlv_old'));
    for (const [at, kind] of [
      [100, 'delivery_scheduled'],
      [200, 'unlock_granted'],
    ] as const) {
      await old.transaction().execute(async (trx) => {
        await trx
          .insertInto('delivery_events')
          .values({
            delivery_id: 'dlv_old',
            at,
            kind,
            outcome: 'info',
            code: null,
            detail: JSON.stringify({ at }),
          })
          .execute();
        await appendAudit(trx, { ...event(at, kind), deliveryId: 'dlv_old' });
      });
    }
    await old.destroy();

    const store = await openStore({ kind: 'sqlite', file });
    opened.push(store);
    expect(store.migrated[0]).toBe('0010_timeline_from_audit');
    await store.write((trx) => appendEvent(trx, 'dlv_old', event(300, 'vehicle_unlocked')));
    await store.write((trx) => appendAudit(trx, { ...event(400, 'api_key_used'), deliveryId: 'dlv_old' }));
    await store.write((trx) => appendEvent(trx, 'dlv_old', event(500, 'vehicle_locked')));
    const timeline = await timelineOf(store.db, 'dlv_old');
    // The key's use names the delivery but is not one of its events.
    expect(timeline.map((e) => [e.kind, e.at])).toEqual([
      ['delivery_scheduled', 100],
      ['unlock_granted', 200],
      ['vehicle_unlocked', 300],
      ['vehicle_locked', 500],
    ]);
    const seqs = timeline.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(timeline[2]?.detail).toEqual({ at: 300 });
    await expectOneChain(store, 5);
  });
});

describe('the audit tail', () => {
  it('carried between SQLite transactions, survives another writer appending meanwhile', async () => {
    const file = tempFile();
    const a = await openStore({ kind: 'sqlite', file });
    opened.push(a);
    await a.write((trx) => appendAudit(trx, { ...event(1, 'first'), deliveryId: null }));
    // Another process on the same file (a CLI, say) appends behind the back of a's carried tail.
    const b = await openStore({ kind: 'sqlite', file });
    opened.push(b);
    await b.write((trx) => appendAudit(trx, { ...event(2, 'other'), deliveryId: null }));
    await b.write((trx) => appendAudit(trx, { ...event(3, 'other'), deliveryId: null }));
    const next = await a.write((trx) => appendAudit(trx, { ...event(4, 'second'), deliveryId: null }));
    expect(next.index).toBe(3);
    await expectOneChain(a, 4);
  });

  it('is never earlier than the entry before it', async () => {
    const store = await openStore({ kind: 'sqlite', file: tempFile() });
    opened.push(store);
    await store.write((trx) => appendAudit(trx, { ...event(500, 'later'), deliveryId: null }));
    await store.write((trx) => appendAudit(trx, { ...event(100, 'earlier'), deliveryId: null }));
    expect((await readAuditEntries(store.db, 0, 2)).map((e) => e.at)).toEqual([500, 500]);
  });

  it('on PostgreSQL, stores appending at once to one database keep one chain (the advisory lock)', async () => {
    const fresh = await freshPgSchema();
    drops.push(fresh.drop);
    const replicas = [
      await openStore(fresh.config),
      await openStore(fresh.config),
      await openStore(fresh.config),
    ];
    opened.push(...replicas);
    await Promise.all(
      replicas.flatMap((r, n) =>
        Array.from({ length: 10 }, (_, i) =>
          r.write((trx) => appendAudit(trx, { ...event(i, `replica_${n}`), deliveryId: null })),
        ),
      ),
    );
    await expectOneChain(replicas[0] as Store, 30);
  });
});

describe("a unit's audit entries", () => {
  const counting = countStatements();
  const inserts = (tallies: Map<string, Tally>): number =>
    [...tallies]
      .filter(([text]) => text.toLowerCase().startsWith('insert into "audit_entries"'))
      .reduce((sum, [, t]) => sum + t.count, 0);

  it.each(['sqlite', 'postgres'] as const)(
    'on %s, are one INSERT per unit, one chain in order, and go with a unit that throws',
    async (dialect) => {
      let store: Store;
      if (dialect === 'sqlite') store = await openStore({ kind: 'sqlite', file: tempFile() });
      else {
        const fresh = await freshPgSchema();
        drops.push(fresh.drop);
        store = await openStore(fresh.config);
      }
      opened.push(store);
      await store.write((trx) => appendAudit(trx, { ...event(1, 'first'), deliveryId: null }));
      const tallies = new Map<string, Tally>();
      counting.into = tallies;
      try {
        // Queued in one event-loop turn: one transaction, three units, the second of which throws.
        const units = [
          store.write(async (trx) => {
            await queueAudit(trx, { ...event(2, 'a1'), deliveryId: null });
            await queueAudit(trx, { ...event(3, 'a2'), deliveryId: 'dlv_a' });
            // An entry whose index the caller needs is written at once, after the ones queued before it.
            return appendAudit(trx, { ...event(4, 'a3'), deliveryId: null });
          }),
          store.write(async (trx) => {
            await queueAudit(trx, { ...event(5, 'b1'), deliveryId: null });
            throw new Error('refused');
          }),
          store.write(async (trx) => {
            await queueAudit(trx, { ...event(6, 'c1'), deliveryId: null });
            await queueAudit(trx, { ...event(7, 'c2'), deliveryId: null });
          }),
        ];
        const [a, b, c] = await Promise.allSettled(units);
        expect(a).toMatchObject({ status: 'fulfilled', value: { index: 3 } });
        expect(b).toMatchObject({ status: 'rejected', reason: { message: 'refused' } });
        expect(c?.status).toBe('fulfilled');
      } finally {
        counting.into = null;
      }
      // a: its two queued entries in one INSERT, then its own; c: one INSERT.
      expect(inserts(tallies)).toBe(3);
      const entries = await readAuditEntries(store.db, 0, 6);
      expect(entries.map((e) => e.kind)).toEqual(['first', 'a1', 'a2', 'a3', 'c1', 'c2']);
      await expectOneChain(store, 6);
    },
    30_000,
  );

  it('queued on SQLite, are chained again on the real tail when another writer appended meanwhile', async () => {
    const file = tempFile();
    const a = await openStore({ kind: 'sqlite', file });
    opened.push(a);
    await a.write((trx) => queueAudit(trx, { ...event(1, 'first'), deliveryId: null }));
    const b = await openStore({ kind: 'sqlite', file });
    opened.push(b);
    await b.write((trx) => queueAudit(trx, { ...event(2, 'other'), deliveryId: null }));
    await a.write(async (trx) => {
      await queueAudit(trx, { ...event(3, 'second'), deliveryId: null });
      await queueAudit(trx, { ...event(4, 'third'), deliveryId: null });
    });
    expect((await readAuditEntries(a.db, 0, 4)).map((e) => e.kind)).toEqual([
      'first',
      'other',
      'second',
      'third',
    ]);
    await expectOneChain(a, 4);
  });

  it('on PostgreSQL, queued by stores writing at once to one database, keep one chain', async () => {
    const fresh = await freshPgSchema();
    drops.push(fresh.drop);
    const replicas = [await openStore(fresh.config), await openStore(fresh.config)];
    opened.push(...replicas);
    await Promise.all(
      replicas.flatMap((r, n) =>
        Array.from({ length: 8 }, (_, i) =>
          r.write(async (trx) => {
            await queueAudit(trx, { ...event(i, `replica_${n}`), deliveryId: null });
            await queueAudit(trx, { ...event(i, `replica_${n}_again`), deliveryId: null });
          }),
        ),
      ),
    );
    await expectOneChain(replicas[0] as Store, 32);
  });
});

describe('state reports', () => {
  const row = {
    online: true,
    locked: true,
    position: { lat: 1, lon: 2 },
    ignition: 'off',
    doorsOpen: false,
    lastSeen: 1_000,
  } as VehicleRecord;
  const report: ReportedState = {
    online: true,
    locked: true,
    position: { lat: 1, lon: 2 },
    ignition: 'off',
    doorsOpen: false,
    seenAt: 5_000,
    seq: 9,
  };

  it('are written when they change the row, or when its lastSeen is older than the resolution', () => {
    expect(reportChanges(row, report, 10_000)).toBe(false);
    expect(reportChanges(row, { ...report, seenAt: 11_000 }, 10_000)).toBe(true);
    expect(reportChanges(row, { ...report, locked: false }, 10_000)).toBe(true);
    expect(reportChanges(row, { ...report, position: { lat: 1, lon: 2.0001 } }, 10_000)).toBe(true);
    expect(reportChanges(row, { ...report, ignition: 'on' }, 10_000)).toBe(true);
    expect(reportChanges(row, { ...report, doorsOpen: true }, 10_000)).toBe(true);
    expect(reportChanges({ ...row, online: false }, report, 10_000)).toBe(true);
    expect(reportChanges(null, report, 10_000)).toBe(true);
  });
});

// Test harness for the audit log without a broker: a real store on the run's dialect (a SQLite file in a temp dir, or
// a PostgreSQL schema), a checkpoint key, a clock.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AuditLog, createAuditLog } from '../../gateway/audit/log.ts';
import type { Db } from '../../gateway/store/db.ts';
import type { Store } from '../../gateway/store/store.ts';
import {
  type AuditEntry,
  type AuditInput,
  canonicalJson,
  entryLeafHash,
} from '../../protocols/audit/index.ts';
import { scratchStore } from './temp-store.ts';

export const ORIGIN = 'curbside-key.test/audit';
export const T0 = Date.parse('2026-01-01T10:00:00Z');

export interface TestLog {
  dir: string;
  /** The store's settings for a program (DATA_DIR, and DATABASE_URL on PostgreSQL). */
  env: { DATA_DIR: string; DATABASE_URL?: string };
  store: Store;
  audit: AuditLog;
  privateKey: KeyObject;
  close(): Promise<void>;
}

export async function openTestLog(
  privateKey: KeyObject = generateKeyPairSync('ed25519').privateKey,
): Promise<TestLog> {
  const dir = mkdtempSync(join(tmpdir(), 'curbside-audit-'));
  const scratch = await scratchStore(join(dir, 'data'));
  const store = await scratch.open();
  let t = T0;
  const audit = createAuditLog({
    db: store.db,
    signer: { origin: ORIGIN, privateKey },
    now: () => (t += 1000),
  });
  return {
    dir,
    env: scratch.env,
    store,
    audit,
    privateKey,
    async close() {
      await store.close();
      await scratch.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const e = (
  kind: string,
  outcome: AuditInput['outcome'],
  deliveryId: string | null,
  detail = {},
  code: string | null = null,
) => ({
  kind,
  outcome,
  deliveryId,
  detail,
  code,
});

/** A day in the log: a car linked, one delivery unlocked and relocked, one unlocked and never relocked. */
export const SCRIPT: Array<Omit<AuditInput, 'at'>> = [
  e('vehicle_linked', 'granted', null, {
    vin: '1G1ZE5ST5KF100231',
    ownerId: 'owner-ada',
    consent: ['unlock', 'lock'],
  }),
  e('location_registered', 'info', null, {
    locationId: 'loc_1',
    ownerId: 'owner-ada',
    lat: 47.6,
    lon: -122.3,
    radiusM: 200,
  }),
  e('delivery_scheduled', 'info', 'dlv_a', { vin: '1G1ZE5ST5KF100231', driverId: 'driver-7' }),
  e('api_key_used', 'info', 'dlv_a', {
    keyId: 'key_1',
    scope: 'all',
    method: 'POST',
    route: '/v1/deliveries/:id/unlock',
  }),
  e('unlock_requested', 'denied', 'dlv_a', { driverId: 'driver-9' }, 'DRIVER_NOT_ASSIGNED'),
  e('unlock_granted', 'granted', 'dlv_a', { driverId: 'driver-7', checks: ['driver', 'window'] }),
  e('command_sent', 'info', 'dlv_a', { action: 'unlock', commandId: 'cmd_1', tokenSha256: 'abc' }),
  e('vehicle_unlocked', 'granted', 'dlv_a', { commandId: 'cmd_1', locked: false }),
  e('lock_granted', 'granted', 'dlv_a', { driverId: 'driver-7' }),
  e('command_sent', 'info', 'dlv_a', { action: 'lock', commandId: 'cmd_2', tokenSha256: 'def' }),
  e('vehicle_locked', 'granted', 'dlv_a', { commandId: 'cmd_2', locked: true }),
  e('delivery_completed', 'info', 'dlv_a'),
  e('delivery_scheduled', 'info', 'dlv_b', { vin: '1G1ZE5ST5KF100231', driverId: 'driver-8' }),
  e('unlock_granted', 'granted', 'dlv_b', { driverId: 'driver-8' }),
  e('command_sent', 'info', 'dlv_b', { action: 'unlock', commandId: 'cmd_3', tokenSha256: 'ghi' }),
  e('vehicle_unlocked', 'granted', 'dlv_b', { commandId: 'cmd_3', locked: false }),
];

/** Appends the script, signing checkpoints after the entries numbered in checkpointsAfter. */
export async function play(log: TestLog, checkpointsAfter: number[] = [4, 12]): Promise<void> {
  for (const [i, input] of SCRIPT.entries()) {
    await log.audit.append({ ...input, at: T0 + i * 1500 });
    if (checkpointsAfter.includes(i + 1)) await log.audit.checkpoint();
  }
}

/** What an operator with write access to the database could do: change entry `index` and re-chain the rest. */
export async function rewriteHistory(db: Db, index: number, change: (e: AuditEntry) => void): Promise<void> {
  const rows = await db
    .selectFrom('audit_entries')
    .selectAll()
    .where('idx', '>=', index)
    .orderBy('idx')
    .execute();
  let prev: string | null = null;
  for (const row of rows) {
    const entry = JSON.parse(row.entry) as AuditEntry;
    if (Number(row.idx) === index) change(entry);
    else entry.prev = prev;
    const leaf = entryLeafHash(entry).toString('base64');
    prev = leaf;
    await db
      .updateTable('audit_entries')
      .set({ entry: canonicalJson(entry), leaf_hash: leaf })
      .where('idx', '=', row.idx)
      .execute();
  }
}

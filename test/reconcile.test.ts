// Tests the reconciler against a real SQLite store and a fake MQTT link: late acks, answers with and without
// command outcomes, relocks, restarts and the sweep's backoff. No network, a frozen clock.
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ensureDevPki } from '../certs/index.ts';
import { createKeyedMutex, type KeyedMutex } from '../gateway/deliveries/keyed-mutex.ts';
import { createReconciler, type Reconciler } from '../gateway/deliveries/reconcile.ts';
import { type CommandRecord, findVehicleAck, insertCommand } from '../gateway/store/commands.ts';
import { insertDelivery, overdueRelocks } from '../gateway/store/deliveries.ts';
import { insertLocation } from '../gateway/store/locations.ts';
import type { Store } from '../gateway/store/store.ts';
import { timelineOf } from '../gateway/store/timeline.ts';
import { insertVehicle, recordVehicleState } from '../gateway/store/vehicles.ts';
import { createVehicleLimiter } from '../gateway/vehicles/limiter.ts';
import type { ReportWait } from '../gateway/vehicles/link.ts';
import { type Ack, type StateReport, signAck, type UnsignedAck } from '../protocols/index.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

const NOW = Date.parse('2025-06-02T09:00:00Z');
const VIN = '1G1ZE5ST5KF100231';
const DLV = 'dlv_1';

let pkiDir: string;
/** The car's certified key: late acks are evidence only when it signed them (TOKEN.md §9). */
let carKey: KeyObject;
let carCert: string;
let dir: string;
let store: Store;
let scratch: ScratchStore;
let guard: KeyedMutex;
/** Ends the holds taken with hold(). */
let releases: Array<() => void>;
let answers: ReportWait[];
let asked: Array<readonly string[]>;
let reconciler: Reconciler;

function report(locked: boolean, extra: Partial<StateReport> = {}): StateReport {
  return {
    v: 1,
    type: 'state',
    vin: VIN,
    seq: 7,
    online: true,
    locked,
    doors: { driver: 'closed', passenger: 'closed', rearLeft: 'closed', rearRight: 'closed' },
    trunk: 'closed',
    ignition: 'off',
    position: { lat: 47.6, lon: -122.3 },
    at: NOW,
    ...extra,
  };
}

beforeAll(async () => {
  pkiDir = mkdtempSync(join(tmpdir(), 'reconcile-pki-'));
  const pki = await ensureDevPki({ dir: pkiDir, vins: [VIN], now: () => new Date(NOW) });
  carKey = createPrivateKey(readFileSync(pki.vehicleKey(VIN), 'utf8'));
  carCert = readFileSync(pki.vehicleCert(VIN), 'utf8');
});
afterAll(() => {
  rmSync(pkiDir, { recursive: true, force: true });
});

/** An ack as the car sends it: signed with its certified key, unless another key is given. */
function ack(commandId: string, over: Partial<UnsignedAck> = {}, key: KeyObject = carKey): Ack {
  const unsigned: UnsignedAck = {
    v: 1,
    type: 'ack',
    vin: VIN,
    commandId,
    deliveryId: DLV,
    action: 'unlock',
    outcome: 'executed',
    locked: false,
    at: NOW,
    ...over,
  };
  return signAck(unsigned, key);
}

/** Holds the delivery as a request waiting for its ack would. */
function hold(deliveryId: string): void {
  void guard.run(deliveryId, () => new Promise<void>((resolve) => releases.push(resolve)));
}

async function command(id: string, over: Partial<CommandRecord> = {}): Promise<void> {
  await insertCommand(store.db, {
    id,
    deliveryId: DLV,
    vin: VIN,
    action: 'unlock',
    jti: `jti_${id}`,
    tokenHash: `hash_${id}`,
    status: 'timeout',
    reason: 'NO_ACK',
    issuedAt: NOW,
    expiresAt: NOW + 60_000,
    ackedAt: null,
    ...over,
  });
}

async function delivery(status: 'scheduled' | 'unlocked', unlocksUsed: number): Promise<void> {
  await store.db
    .updateTable('deliveries')
    // An unlocked delivery's car was opened (its unlock time starts the relock watchdog's clock).
    .set({ status, unlocks_used: unlocksUsed, unlocked_at: status === 'unlocked' ? NOW : null })
    .where('id', '=', DLV)
    .execute();
}

const row = async (id: string) =>
  store.db.selectFrom('commands').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
const dlv = async () =>
  store.db.selectFrom('deliveries').selectAll().where('id', '=', DLV).executeTakeFirstOrThrow();
const kinds = async () => (await timelineOf(store.db, DLV)).map((e) => e.kind);

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'reconcile-'));
  scratch = await scratchStore(dir);
  store = await scratch.open();
  await insertVehicle(store.db, {
    vin: VIN,
    make: 'Chevrolet',
    model: 'Malibu',
    year: 2019,
    provider: 'onstar',
    ownerId: 'o',
    consent: ['unlock', 'lock'],
    linkedAt: NOW,
    certPem: carCert,
  });
  await insertLocation(store.db, {
    id: 'loc_1',
    ownerId: 'o',
    label: 'l',
    kind: 'home',
    lat: 47.6,
    lon: -122.3,
    radiusM: 200,
    access: 'public',
    createdAt: NOW,
  });
  await insertDelivery(store.db, {
    id: DLV,
    vin: VIN,
    locationId: 'loc_1',
    driverId: 'd',
    packageIds: ['p'],
    windowStart: NOW - 60_000,
    windowEnd: NOW + 3_600_000,
    status: 'scheduled',
    unlocksUsed: 1,
    createdAt: NOW,
    updatedAt: NOW,
    blocked: false,
    parking: null,
    unlockedAt: null,
    unlockedCarAt: null,
    relockedAt: null,
    relockRetryAt: null,
    lockUnconfirmedAt: null,
  });
  guard = createKeyedMutex();
  releases = [];
  answers = [];
  asked = [];
  const link = {
    connected: () => true,
    query: vi.fn(async (_vin: string, _timeoutMs: number, ids: readonly string[] = []) => {
      asked.push(ids);
      return answers.shift() ?? { kind: 'timeout' as const };
    }),
  };
  reconciler = createReconciler({
    db: store.db,
    write: store.write,
    link: () => link,
    guard,
    now: () => NOW,
    logger: pino({ level: 'silent' }),
    queryTimeoutMs: 1_000,
    intervalMs: 0,
  });
});

afterEach(async () => {
  for (const release of releases) release();
  await reconciler.close();
  await store.close();
  await scratch.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('late acks', () => {
  it('an executed one settles the command, opens the delivery, and its duplicate changes nothing', async () => {
    await command('cmd_1');
    await reconciler.onAck(VIN, ack('cmd_1'));
    expect(await row('cmd_1')).toMatchObject({ status: 'executed' });
    expect(await dlv()).toMatchObject({ status: 'unlocked', unlocks_used: 1 });
    await reconciler.onAck(VIN, ack('cmd_1'));
    expect((await kinds()).filter((k) => k === 'vehicle_unlocked')).toHaveLength(1);
    expect((await timelineOf(store.db, DLV)).at(-1)?.detail).toMatchObject({ settledBy: 'late_ack' });
  });

  it('TOKEN_REPLAYED on our own command means the car executed it before (a reboot forgot the ack)', async () => {
    await command('cmd_1');
    await reconciler.onAck(VIN, ack('cmd_1', { outcome: 'refused', reason: 'TOKEN_REPLAYED', locked: true }));
    expect(await row('cmd_1')).toMatchObject({ status: 'executed', reason: 'TOKEN_REPLAYED' });
  });

  it('a refusal settles the command and gives the unlock back', async () => {
    await command('cmd_1');
    await reconciler.onAck(VIN, ack('cmd_1', { outcome: 'refused', reason: 'TOKEN_EXPIRED', locked: true }));
    expect(await row('cmd_1')).toMatchObject({ status: 'refused', reason: 'TOKEN_EXPIRED' });
    expect(await dlv()).toMatchObject({ status: 'scheduled', unlocks_used: 0 });
  });

  it('is evidence only when it verifies: a forged one settles nothing and is kept as ack_rejected', async () => {
    await command('cmd_1');
    const forger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    await reconciler.onAck(VIN, ack('cmd_1', {}, forger));
    await reconciler.onAck(VIN, ack('cmd_1', { action: 'lock' }));
    expect(await row('cmd_1')).toMatchObject({ status: 'timeout' });
    expect(await dlv()).toMatchObject({ status: 'scheduled' });
    expect((await timelineOf(store.db, DLV)).map((e) => e.code)).toEqual([
      'ACK_SIGNATURE_INVALID',
      'ACK_BINDING_MISMATCH',
    ]);
    expect(await findVehicleAck(store.db, 'cmd_1')).toBeNull();
    // The genuine one still settles it, and is kept as evidence.
    await reconciler.onAck(VIN, ack('cmd_1'));
    expect(await row('cmd_1')).toMatchObject({ status: 'executed' });
    expect(await findVehicleAck(store.db, 'cmd_1')).toMatchObject({ outcome: 'executed', locked: false });
  });

  it('an ack naming another car, or no command of ours, is ignored', async () => {
    await command('cmd_1');
    await reconciler.onAck('YV1A22MK3F1900345', { ...ack('cmd_1'), vin: 'YV1A22MK3F1900345' });
    await reconciler.onAck(VIN, ack('cmd_unknown'));
    expect(await row('cmd_1')).toMatchObject({ status: 'timeout' });
  });
});

describe('answers to state queries', () => {
  it('name the queried commands; a listed one is settled by its outcome, an unlisted one never arrived', async () => {
    await command('cmd_1');
    await command('cmd_2', { issuedAt: NOW + 1 });
    answers.push({
      kind: 'state',
      report: report(false, { commands: [{ commandId: 'cmd_1', outcome: 'executed' }] }),
    });
    expect(await reconciler.afterTimeout(VIN, 'cmd_2', DLV)).toEqual({
      status: 'not_executed',
      locked: false,
    });
    expect(asked).toEqual([['cmd_1', 'cmd_2']]);
    expect(await row('cmd_1')).toMatchObject({ status: 'executed', reason: 'REPORTED_BY_CAR' });
    expect(await row('cmd_2')).toMatchObject({ status: 'not_executed', reason: 'NOT_RECEIVED' });
    // Two reservations, one of them given back.
    expect(await dlv()).toMatchObject({ status: 'unlocked', unlocks_used: 0 });
  });

  it('without outcomes, the lock state decides; a late ack can still correct it', async () => {
    await command('cmd_1');
    answers.push({ kind: 'state', report: report(true) });
    expect((await reconciler.afterTimeout(VIN, 'cmd_1', DLV)).status).toBe('not_executed');
    expect(await row('cmd_1')).toMatchObject({ reason: 'LOCKED_AT_QUERY' });
    expect(await dlv()).toMatchObject({ unlocks_used: 0 });
    // It ran after all (it was still on its way): the late ack wins and the unlock is counted again.
    await reconciler.onAck(VIN, ack('cmd_1'));
    expect(await row('cmd_1')).toMatchObject({ status: 'executed' });
    expect(await dlv()).toMatchObject({ status: 'unlocked', unlocks_used: 1 });
  });

  it('a command another request is still waiting for is neither asked about nor settled', async () => {
    await command('cmd_1', { status: 'sent', reason: null });
    hold(DLV);
    answers.push({ kind: 'state', report: report(true, { commands: [] }) });
    await reconciler.sweep();
    expect(asked).toEqual([]);
    expect(await row('cmd_1')).toMatchObject({ status: 'sent' });
  });

  it('no answer leaves everything as it was', async () => {
    await command('cmd_1');
    expect(await reconciler.afterTimeout(VIN, 'cmd_1', DLV)).toEqual({ status: 'timeout', locked: null });
    expect(await row('cmd_1')).toMatchObject({ status: 'timeout' });
  });
});

describe('relocks and sweeps', () => {
  it('a locked report for an unlocked delivery is confirmed by a query, then the delivery is relocked', async () => {
    await delivery('unlocked', 1);
    answers.push({ kind: 'state', report: report(true, { commands: [] }) });
    reconciler.onState(VIN, report(true));
    await vi.waitFor(async () => expect((await dlv()).status).toBe('relocked'));
    expect((await timelineOf(store.db, DLV)).at(-1)).toMatchObject({
      kind: 'vehicle_relocked',
      detail: { by: 'car', locked: true },
    });
    // Confirmed locked: the relock watchdog leaves it alone, however long ago the car was opened.
    expect(await overdueRelocks(store.db, NOW + 3_600_000, 1_000)).toEqual([]);
  });

  it('answers (they carry a nonce) start nothing, and a delivery held by a request is left alone', async () => {
    await delivery('unlocked', 1);
    reconciler.onState(VIN, report(true, { nonce: 'n'.repeat(22) }));
    hold(DLV);
    answers.push({ kind: 'state', report: report(true, { commands: [] }) });
    await reconciler.sweep();
    expect(asked).toEqual([]);
    expect((await dlv()).status).toBe('unlocked');
  });

  it('backs off from a car that does not answer, until it reports again', async () => {
    await command('cmd_1');
    await reconciler.sweep();
    await reconciler.sweep();
    expect(asked).toHaveLength(1);
    answers.push({
      kind: 'state',
      report: report(false, { commands: [{ commandId: 'cmd_1', outcome: 'executed' }] }),
    });
    reconciler.onState(VIN, report(false));
    await vi.waitFor(async () => expect((await row('cmd_1')).status).toBe('executed'));
    expect(asked).toHaveLength(2);
  });

  it('at start, commands a crash left sent become timeout with a timeline entry', async () => {
    await command('cmd_1', { status: 'sent', reason: null });
    await recordVehicleState(store.db, VIN, { online: true, seenAt: NOW });
    expect(await reconciler.recoverAtStart()).toBe(1);
    expect(await row('cmd_1')).toMatchObject({ status: 'timeout', reason: 'GATEWAY_RESTARTED' });
    expect((await timelineOf(store.db, DLV)).at(-1)).toMatchObject({
      kind: 'command_interrupted',
      code: 'GATEWAY_RESTARTED',
    });
    expect(await reconciler.recoverAtStart()).toBe(0);
  });
});

describe('the per-vehicle limiter', () => {
  it('allows a burst, then one per interval; one command in flight per VIN; VINs are independent', () => {
    let t = NOW;
    const limiter = createVehicleLimiter({ burst: 2, perMinute: 6 }, () => t);
    const a = limiter.acquire(VIN);
    expect(a.ok).toBe(true);
    expect(limiter.acquire(VIN)).toMatchObject({ ok: false, reason: 'IN_FLIGHT', retryAfterS: 1 });
    if (a.ok) a.release();
    const b = limiter.acquire(VIN);
    if (b.ok) b.release();
    expect(limiter.acquire(VIN)).toMatchObject({ ok: false, reason: 'RATE', retryAfterS: 10 });
    expect(limiter.acquire('YV1A22MK3F1900345').ok).toBe(true);
    t += 10_000;
    expect(limiter.acquire(VIN).ok).toBe(true);
  });
});

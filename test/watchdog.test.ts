// Tests the relock watchdog against a real SQLite store with a frozen clock and a hand-driven timer: which
// unlocks are overdue, retries, unlinked vehicles, and one sweep at a time.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RelockOutcome } from '../gateway/deliveries/relock.ts';
import { createRelockWatchdog, type Every } from '../gateway/deliveries/watchdog.ts';
import { type DeliveryRecord, insertDelivery, updateDelivery } from '../gateway/store/deliveries.ts';
import { insertLocation } from '../gateway/store/locations.ts';
import type { Store } from '../gateway/store/store.ts';
import { insertVehicle, updateVehicle } from '../gateway/store/vehicles.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

const T0 = Date.parse('2026-06-01T12:00:00Z');
const RELOCK_AFTER_MS = 90_000;
const VIN = '1G1ZE5ST5KF100231';
const OTHER_VIN = '1GNSKBKC3FR200114';

let dir: string;
let store: Store;
let scratch: ScratchStore;
let time: number;
let relocks: string[];
let outcome: RelockOutcome;
let release: (() => void) | null;
let relocked: number;
let expiries: Array<{ id: string; asOf: number }>;
let expireAnswer: boolean;

/** A timer the test fires by hand. */
function manualEvery(): { every: Every; fire(): void; intervals: number[]; cancelled: number } {
  let fn: (() => void) | null = null;
  const state = {
    intervals: [] as number[],
    cancelled: 0,
    every: ((ms, f) => {
      state.intervals.push(ms);
      fn = f;
      return () => {
        state.cancelled++;
        fn = null;
      };
    }) as Every,
    fire: () => fn?.(),
  };
  return state;
}

function watchdog(every?: Every) {
  return createRelockWatchdog({
    db: store.db,
    deliveries: {
      async relock(id) {
        relocks.push(id);
        if (release) await new Promise<void>((r) => (release = r));
        return outcome;
      },
      async expire(id, asOf) {
        expiries.push({ id, asOf });
        return expireAnswer;
      },
    },
    relockAfterMs: RELOCK_AFTER_MS,
    now: () => time,
    logger: pino({ level: 'silent' }),
    ...(every ? { every } : {}),
    onRelocked: () => {
      relocked++;
    },
  });
}

let serial = 0;
async function delivery(vin: string, patch: Partial<DeliveryRecord>): Promise<string> {
  const id = `dlv_${++serial}`;
  await insertDelivery(store.db, {
    id,
    vin,
    locationId: 'loc_1',
    driverId: 'd',
    packageIds: ['p'],
    windowStart: T0 - 3_600_000,
    windowEnd: T0 + 3_600_000,
    status: 'scheduled',
    unlocksUsed: 0,
    createdAt: T0,
    updatedAt: T0,
    blocked: false,
    parking: null,
    unlockedAt: null,
    unlockedCarAt: null,
    relockedAt: null,
    relockRetryAt: null,
    lockUnconfirmedAt: null,
  });
  await updateDelivery(store.db, id, { updatedAt: T0, ...patch });
  return id;
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'curbside-watchdog-'));
  scratch = await scratchStore(dir);
  store = await scratch.open();
  time = T0;
  relocks = [];
  outcome = 'locked';
  release = null;
  relocked = 0;
  expiries = [];
  expireAnswer = true;
  for (const vin of [VIN, OTHER_VIN]) {
    await insertVehicle(store.db, {
      vin,
      make: 'Chevrolet',
      model: 'Malibu',
      year: 2019,
      provider: 'onstar',
      ownerId: 'owner-ada',
      consent: ['unlock', 'lock'],
      certPem: '',
      linkedAt: T0,
    });
  }
  await insertLocation(store.db, {
    id: 'loc_1',
    ownerId: 'owner-ada',
    label: 'lot',
    kind: 'workplace',
    access: 'public',
    lat: 47.6,
    lon: -122.3,
    radiusM: 200,
    createdAt: T0,
  });
});
afterEach(async () => {
  await store.close();
  await scratch.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the relock watchdog', () => {
  it('locks exactly the cars unlocked at least RELOCK_AFTER_S ago and not locked since', async () => {
    const overdue = await delivery(VIN, { status: 'unlocked', unlockedAt: T0 - RELOCK_AFTER_MS });
    await delivery(VIN, { status: 'unlocked', unlockedAt: T0 - RELOCK_AFTER_MS + 1 });
    await delivery(VIN, { status: 'completed', unlockedAt: T0 - 600_000, relockedAt: T0 - 500_000 });
    await delivery(VIN, { status: 'scheduled' });
    // Cancelled while open and not yet confirmed locked: still the watchdog's to lock.
    const cancelledOpen = await delivery(VIN, { status: 'cancelled', unlockedAt: T0 - 600_000 });
    expect((await watchdog().sweep()).map((r) => r.deliveryId).sort()).toEqual(
      [overdue, cancelledOpen].sort(),
    );
    expect(relocks.sort()).toEqual([overdue, cancelledOpen].sort());
  });

  it('waits for a scheduled retry after a lock it could not confirm', async () => {
    const id = await delivery(VIN, {
      status: 'unlocked',
      unlockedAt: T0 - 600_000,
      relockRetryAt: T0 + 1_000,
    });
    const w = watchdog();
    expect(await w.sweep()).toEqual([]);
    time = T0 + 1_000;
    expect(await w.sweep()).toEqual([{ deliveryId: id, outcome: 'locked' }]);
  });

  it('reports each lock the car confirmed, not one it could not confirm (the metric)', async () => {
    await delivery(VIN, { status: 'unlocked', unlockedAt: T0 - RELOCK_AFTER_MS });
    outcome = 'unconfirmed';
    await watchdog().sweep();
    expect(relocked).toBe(0);
    outcome = 'locked';
    await watchdog().sweep();
    expect(relocked).toBe(1);
  });

  it('expires exactly the deliveries never opened whose window ended, as of its own clock', async () => {
    const ended = await delivery(VIN, { status: 'scheduled' });
    await updateDelivery(store.db, ended, { updatedAt: T0 });
    await store.db.updateTable('deliveries').set({ window_end: T0 }).where('id', '=', ended).execute();
    const open = await delivery(VIN, { status: 'scheduled' }); // window ends in an hour
    const blocked = await delivery(OTHER_VIN, { status: 'scheduled', blocked: true });
    await store.db
      .updateTable('deliveries')
      .set({ window_end: T0 - 1 })
      .where('id', '=', blocked)
      .execute();
    // Past their window but opened, or with an unlock used or in flight: the relock's, or nobody's.
    for (const patch of [
      { status: 'unlocked' as const, unlockedAt: T0 - 1_000, relockedAt: T0 - 500 },
      { status: 'relocked' as const, unlockedAt: T0 - 1_000, relockedAt: T0 - 500 },
      { status: 'scheduled' as const, unlocksUsed: 1 },
      { status: 'scheduled' as const, unlockedAt: T0 - 1_000, relockedAt: T0 - 500 },
      { status: 'cancelled' as const },
      { status: 'completed' as const },
    ]) {
      const id = await delivery(VIN, patch);
      await store.db
        .updateTable('deliveries')
        .set({ window_end: T0 - 1 })
        .where('id', '=', id)
        .execute();
    }
    const w = watchdog();
    expect(await w.sweep()).toEqual([
      { deliveryId: blocked, outcome: 'expired' },
      { deliveryId: ended, outcome: 'expired' },
    ]);
    expect(expiries).toEqual([
      { id: blocked, asOf: T0 },
      { id: ended, asOf: T0 },
    ]);
    expect(relocks).toEqual([]);
    // An expiry a request or another replica overtook is not reported; the open window expires in its time.
    expiries = [];
    expireAnswer = false;
    time = T0 + 3_600_000;
    expect(await w.sweep()).toEqual([]);
    expect(expiries.map((e) => e.id).sort()).toEqual([blocked, ended, open].sort());
  });

  it('sends nothing for an unlinked vehicle (unlinking locked it, or the car fail-safe will)', async () => {
    await delivery(OTHER_VIN, { status: 'cancelled', unlockedAt: T0 - 600_000 });
    await updateVehicle(store.db, OTHER_VIN, { unlinkedAt: T0 });
    expect(await watchdog().sweep()).toEqual([]);
  });

  it('sweeps on its timer, one sweep at a time, and stop waits for the sweep in progress', async () => {
    const id = await delivery(VIN, { status: 'unlocked', unlockedAt: T0 - RELOCK_AFTER_MS });
    const timer = manualEvery();
    const w = watchdog(timer.every);
    w.start(5_000);
    expect(timer.intervals).toEqual([5_000]);
    release = () => {};
    timer.fire();
    await expect.poll(() => relocks.length).toBe(1);
    // A tick, or a call, while the first sweep still waits on the car joins it instead of starting another.
    const joined = w.sweep();
    timer.fire();
    expect(w.sweep()).toBe(joined);
    expect(relocks).toEqual([id]);
    const stopped = w.stop();
    release?.();
    await stopped;
    expect(await joined).toEqual([{ deliveryId: id, outcome: 'locked' }]);
    expect(timer.cancelled).toBe(1);
  });
});

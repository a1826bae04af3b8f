// Chaos: many deliveries across the whole fleet while seeded random faults hit cars and messages; then the
// invariants: no car open past its relock deadline, every delivery explainable, every timeline complete and
// ordered, and no unlock without a token the gateway minted for it. The seed fixes which faults strike which
// car in which order (and each car's message faults); how many strike before the drivers finish depends on
// timing, so the printed counts vary a little from run to run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_TYPES } from '../gateway/webhooks/events.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import { createFleetFaults, type FleetFaults, mulberry32 } from '../simulator/index.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const SEED = 20_240_601;
const FAILSAFE_MS = 3_000;
const TICK_MS = 100;
const DELIVERIES_PER_CAR = 3;
/** How long a car may stay unlocked after its deadline (car time) before it counts as a violation (wall time). */
const OVERDUE_GRACE_MS = 1_500;

let stack: Stack;
let faults: FleetFaults;
let cars: SeedVehicle[];
/** Every owner subscribes to every event; the receiver fails a seeded share of the deliveries. */
let hooks: Receiver;
const subscriptions = new Map<string, string>();

beforeAll(async () => {
  faults = createFleetFaults({
    seed: SEED,
    plan: {
      fleet: {
        commands: { drop: 0.05, duplicate: 0.1, reorder: 0.05, latencyMs: 10, jitterMs: 250 },
        acks: { drop: 0.15, duplicate: 0.1, jitterMs: 150 },
        state: { drop: 0.05, jitterMs: 100 },
        wakeLatencyMs: 400,
      },
    },
  });
  stack = await startStack(
    {
      COMMAND_TIMEOUT_MS: '1200',
      QUERY_TIMEOUT_MS: '800',
      RECONCILE_INTERVAL_MS: '1000',
      MAX_UNLOCKS: '3',
      VEHICLE_COMMAND_BURST: '50',
      VEHICLE_COMMANDS_PER_MIN: '600',
      RATE_LIMIT_PER_KEY_PER_MIN: '100000',
      // The webhook receiver listens on loopback: only the operator's allowlist lets a webhook reach it.
      WEBHOOK_ALLOW_PRIVATE: '127.0.0.1/32',
    },
    {
      fleet: {
        faults,
        failsafeRelockMs: FAILSAFE_MS,
        tickIntervalMs: TICK_MS,
        backoff: { initialMs: 100, maxMs: 800 },
      },
    },
  );
  cars = [...stack.fleet.cars.values()].map((c) => c.vehicle);
  for (const v of cars) {
    const r = await stack.request('POST', '/v1/vehicles', {
      vin: v.vin,
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      ownerId: v.ownerId,
      consent: ['unlock', 'lock'],
    });
    expect(r.status).toBe(201);
  }
  hooks = await startReceiver();
  const flaky = mulberry32(SEED + 1);
  hooks.respond = () => (flaky() < 0.3 ? 503 : 204);
  for (const ownerId of new Set(cars.map((v) => v.ownerId))) {
    const w = await stack.request('POST', '/v1/webhooks', {
      url: hooks.url,
      events: [...EVENT_TYPES],
      ownerId,
    });
    expect(w.status).toBe(201);
    subscriptions.set(ownerId, w.body.id);
  }
}, 60_000);

afterAll(async () => {
  await stack?.close();
  await hooks?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A driver: schedule, have the car confirm its parking, unlock (retrying what is retryable), wait, lock (same);
 * gives up after a few tries.
 */
async function deliverTo(v: SeedVehicle, random: () => number): Promise<string> {
  const loc = await stack.request('POST', '/v1/locations', {
    ownerId: v.ownerId,
    label: 'kerb',
    lat: v.position.lat,
    lon: v.position.lon,
    radiusM: 200,
    access: 'public',
  });
  const now = Date.now();
  const d = await stack.request('POST', '/v1/deliveries', {
    vin: v.vin,
    locationId: loc.body.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  expect(d.status).toBe(201);
  const id: string = d.body.id;
  const body = { driverId: 'driver-7', position: v.position, packageId: 'pkg-1' };
  let parked = false;
  for (let attempt = 0; attempt < 4 && !parked; attempt++) {
    const r = await stack.request('POST', `/v1/deliveries/${id}/parking`);
    if (r.status === 200) parked = true;
    else await sleep(200 + random() * 600);
  }
  if (!parked) return id;
  let open = false;
  for (let attempt = 0; attempt < 4 && !open; attempt++) {
    const r = await stack.request('POST', `/v1/deliveries/${id}/unlock`, body);
    if (r.status === 200) open = true;
    else if (r.status === 403)
      break; // out of unlocks: the driver gives up
    else await sleep(200 + random() * 600);
  }
  if (!open) return id;
  await sleep(random() * 1_500);
  for (let attempt = 0; attempt < 4; attempt++) {
    const r = await stack.request('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' });
    if (r.status === 200 || r.body?.code === 'DELIVERY_NOT_ACTIVE') break;
    await sleep(200 + random() * 600);
  }
  return id;
}

interface Chaos {
  ops: Record<string, number>;
  violations: string[];
  stop(): Promise<void>;
}

/** Random faults on random cars from the seed, each undone after a while; a monitor watches every car's lock. */
function unleash(random: () => number): Chaos {
  const ops: Record<string, number> = {};
  const violations: string[] = [];
  const heals = new Set<() => void>();
  const timers = new Set<NodeJS.Timeout>();
  const rebooting = new Set<string>();
  const clockOffset = new Map<string, number>();
  let stopped = false;
  const later = (ms: number, heal: () => void): void => {
    heals.add(heal);
    const t = setTimeout(() => {
      timers.delete(t);
      heals.delete(heal);
      heal();
    }, ms);
    timers.add(t);
  };
  const count = (op: string) => {
    ops[op] = (ops[op] ?? 0) + 1;
  };

  const strike = (): void => {
    const v = cars[Math.floor(random() * cars.length)] as SeedVehicle;
    const f = faults.forCar(v.vin);
    const pick = random();
    const span = 800 + Math.floor(random() * 2_000);
    if (pick < 0.2) {
      count('offline');
      f.setLink('offline');
      later(span, () => f.setLink('online'));
    } else if (pick < 0.35) {
      count('no_signal');
      f.setLink('no_signal');
      later(span, () => f.setLink('online'));
    } else if (pick < 0.5) {
      count('asleep');
      if (f.status().link === 'online') f.setLink('asleep');
      later(span, () => {
        if (f.status().link === 'asleep') f.setLink('online');
      });
    } else if (pick < 0.62) {
      count('battery_low');
      f.setBattery('low');
      later(span, () => f.setBattery('ok'));
    } else if (pick < 0.8) {
      count('clock_jump');
      const delta = Math.round((random() < 0.5 ? -1 : 1) * (30_000 + random() * 120_000));
      f.jumpClock(delta);
      clockOffset.set(v.vin, (clockOffset.get(v.vin) ?? 0) + delta);
      later(span, () => {
        f.jumpClock(-delta);
        clockOffset.set(v.vin, (clockOffset.get(v.vin) ?? 0) - delta);
      });
    } else if (pick < 0.9) {
      if (rebooting.has(v.vin)) return;
      count('reboot');
      rebooting.add(v.vin);
      void stack.fleet
        .reboot(v.vin, 150 + Math.floor(random() * 250))
        .finally(() => rebooting.delete(v.vin))
        .catch((err: unknown) => violations.push(`reboot of ${v.vin} failed: ${String(err)}`));
    } else {
      count('clock_drift');
      f.setDrift(Math.round((random() - 0.5) * 4_000));
      later(span, () => f.setDrift(0));
    }
  };

  const overdueSince = new Map<string, number>();
  const monitor = setInterval(() => {
    for (const v of cars) {
      if (rebooting.has(v.vin)) continue;
      const s = stack.fleet.car(v.vin).car.snapshot();
      const carNow = faults.forCar(v.vin).carTime();
      const overdue =
        !s.locked && (carNow === null || s.relockDeadline === null || carNow > s.relockDeadline);
      if (!overdue) {
        overdueSince.delete(v.vin);
        continue;
      }
      const since = overdueSince.get(v.vin) ?? Date.now();
      overdueSince.set(v.vin, since);
      if (Date.now() - since > OVERDUE_GRACE_MS) {
        violations.push(`${v.vin} unlocked ${Date.now() - since} ms past its relock deadline`);
        overdueSince.set(v.vin, Date.now());
      }
    }
  }, 50);

  const loop = (async () => {
    while (!stopped) {
      strike();
      await sleep(250 + random() * 450);
    }
  })();

  return {
    ops,
    violations,
    async stop() {
      stopped = true;
      await loop;
      for (const t of timers) clearTimeout(t);
      for (const heal of heals) heal();
      while (rebooting.size > 0) await sleep(50);
      clearInterval(monitor);
      for (const v of cars) {
        const f = faults.forCar(v.vin);
        f.setLink('online');
        f.setBattery('ok');
        f.setDrift(0);
        const off = clockOffset.get(v.vin) ?? 0;
        if (off !== 0) f.jumpClock(-off);
        f.updatePlan({ commands: {}, acks: {}, state: {} });
      }
    },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: rows and timeline entries are read by shape.
type Any = any;

describe('chaos', () => {
  it('keeps every invariant through seeded random faults', async () => {
    const random = mulberry32(SEED);
    const chaos = unleash(mulberry32(SEED + 1));
    const ids = (
      await Promise.all(
        cars.map(async (v, i) => {
          const driverRandom = mulberry32(SEED + 100 + i);
          const mine: string[] = [];
          for (let k = 0; k < DELIVERIES_PER_CAR; k++) {
            mine.push(await deliverTo(v, driverRandom));
            await sleep(random() * 300);
          }
          return mine;
        }),
      )
    ).flat();
    await chaos.stop();

    // Healed: every car back, every fail-safe run out, every outstanding command settled by the sweep.
    const db = stack.gateway.store.db;
    await expect
      .poll(() => [...stack.fleet.cars.values()].every((c) => c.connection.connected), { timeout: 10_000 })
      .toBe(true);
    await sleep(FAILSAFE_MS + 500);
    await expect
      .poll(
        async () => {
          await stack.gateway.reconciler.sweep();
          const open = await db
            .selectFrom('commands')
            .select(['id', 'vin', 'status'])
            .where('status', 'in', ['sent', 'timeout'])
            .execute();
          const unlocked = await db
            .selectFrom('deliveries')
            .select(['id', 'vin'])
            .where('status', '=', 'unlocked')
            .execute();
          return { open, unlocked };
        },
        { timeout: 20_000, interval: 500 },
      )
      .toEqual({ open: [], unlocked: [] });

    // 1. No car is unlocked past its relock deadline, during the run or now.
    expect(chaos.violations).toEqual([]);
    for (const c of stack.fleet.cars.values()) expect(c.car.snapshot().locked).toBe(true);

    const commands: Any[] = await db.selectFrom('commands').selectAll().execute();
    const byId = new Map(commands.map((c) => [c.id, c]));
    const statuses = new Map<string, number>();
    for (const id of ids) {
      const view = await stack.request('GET', `/v1/deliveries/${id}`);
      const d = view.body;
      statuses.set(d.status, (statuses.get(d.status) ?? 0) + 1);
      const timeline: Any[] = d.timeline;
      const mine = commands.filter((c) => c.delivery_id === id);
      const executed = (action: string) => mine.filter((c) => c.action === action && c.status === 'executed');

      // 2. Every delivery is in a terminal or explainable state, consistent with what its car did.
      expect(['scheduled', 'relocked', 'completed']).toContain(d.status);
      if (d.status === 'scheduled') expect(executed('unlock')).toEqual([]);
      if (d.status === 'relocked') {
        expect(executed('unlock').length).toBeGreaterThan(0);
        expect(timeline.map((e) => e.kind)).toContain('vehicle_relocked');
      }
      if (d.status === 'completed') {
        // By a lock the car executed, or by the car's own report that it locked after the unlock's ack.
        const byCar = timeline.some((e) => e.kind === 'relocked_by_car');
        expect(executed('lock').length > 0 || byCar).toBe(true);
        expect(timeline.filter((e) => e.kind === 'delivery_completed')).toHaveLength(1);
      }
      expect(d.unlocksUsed).toBe(executed('unlock').length);

      // 3. Every timeline is complete and ordered.
      expect(timeline[0].kind).toBe('delivery_scheduled');
      const seqs = timeline.map((e) => e.seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      const ats = timeline.map((e) => Date.parse(e.at));
      expect([...ats].sort((a, b) => a - b)).toEqual(ats);
      for (const [i, e] of timeline.entries()) {
        if (e.kind === 'unlock_granted' || e.kind === 'lock_granted')
          expect(timeline[i + 1]?.kind).toBe('command_sent');
        if (e.kind !== 'command_sent') continue;
        const command = byId.get(e.detail.commandId);
        expect(command, `command ${e.detail.commandId} recorded`).toBeDefined();
        const settlements = timeline.filter(
          (x) =>
            x.seq > e.seq &&
            x.detail?.commandId === e.detail.commandId &&
            ['vehicle_unlocked', 'vehicle_locked', 'vehicle_refused', 'command_not_executed'].includes(
              x.kind,
            ),
        );
        expect(settlements.length, `settlement of ${e.detail.commandId}`).toBeGreaterThan(0);
        const last = settlements.at(-1);
        const expected = {
          executed: ['vehicle_unlocked', 'vehicle_locked'],
          refused: ['vehicle_refused'],
          not_executed: ['command_not_executed'],
        }[command.status as 'executed' | 'refused' | 'not_executed'];
        expect(expected, `final status of ${command.id}`).toContain(last.kind);
      }
    }

    // 4. No unlock happened without a valid token: each one a car executed was minted by the gateway for that
    // command (jti and token hash), and the gateway's record agrees with every car about what ran.
    let unlocks = 0;
    for (const c of stack.fleet.cars.values()) {
      const seen = new Set<string>();
      for (const e of c.executed) {
        expect(seen.has(e.commandId), `${e.commandId} executed twice`).toBe(false);
        seen.add(e.commandId);
        const row = byId.get(e.commandId);
        expect(row, `gateway record of ${e.commandId}`).toBeDefined();
        expect(row).toMatchObject({
          vin: c.vehicle.vin,
          jti: e.jti,
          token_hash: e.tokenSha256,
          action: e.action,
        });
        expect(row.status).toBe('executed');
        if (e.action === 'unlock') unlocks++;
      }
      const claimed = commands
        .filter((r) => r.vin === c.vehicle.vin && r.status === 'executed')
        .map((r) => r.id);
      expect(claimed.sort()).toEqual([...seen].sort());
    }

    // 5. Every notification is either delivered or pending in the outbox: one outbox row per event the gateway
    // emitted to a subscribed owner, none dead, and every row marked delivered reached the receiver.
    const rows = await stack.gateway.store.db
      .selectFrom('webhook_outbox')
      .select(['event_id', 'webhook_id', 'status'])
      .execute();
    const emitted = stack.events.filter((e) => subscriptions.has(e.ownerId));
    expect(rows.length).toBe(emitted.length);
    for (const [ownerId, webhookId] of subscriptions) {
      const mine = rows.filter((r) => r.webhook_id === webhookId).length;
      expect(mine, `outbox rows of ${ownerId}`).toBe(emitted.filter((e) => e.ownerId === ownerId).length);
    }
    expect(rows.filter((r) => r.status !== 'delivered' && r.status !== 'pending')).toEqual([]);
    const heard = new Set(
      hooks.received.filter((h) => h.status === 204).map((h) => h.headers['curbside-event-id']),
    );
    for (const r of rows.filter((x) => x.status === 'delivered')) expect(heard.has(r.event_id)).toBe(true);
    const notificationCounts = `notifications: ${rows.filter((r) => r.status === 'delivered').length} delivered, ${
      rows.filter((r) => r.status === 'pending').length
    } pending, ${hooks.received.filter((h) => h.status !== 204).length} receiver failures retried`;

    const faultCounts = Object.entries(faults.counts())
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
    console.log(
      `chaos (seed ${SEED}): ${ids.length} deliveries on ${cars.length} cars, ${unlocks} unlocks executed; ` +
        `outcomes ${JSON.stringify(Object.fromEntries(statuses))}\n` +
        `  injected: ${JSON.stringify(chaos.ops)}\n  survived: ${faultCounts}\n  ${notificationCounts}`,
    );
    expect(unlocks).toBeGreaterThan(cars.length);
    expect(Object.values(chaos.ops).reduce((a, b) => a + b, 0)).toBeGreaterThan(20);
  }, 120_000);
});

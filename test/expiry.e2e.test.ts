// A delivery whose window passes unused ends expired: found by the watchdog's sweep on its injected clock, with its
// timeline entry and webhook event, once; a delivery that was opened is left to the relock.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_TYPES } from '../gateway/webhooks/events.ts';
import type { WebhookRequest } from '../gateway/webhooks/sender.ts';
import { commandTopic } from '../protocols/index.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import { type Call, callWithKey, deliveryBody, link, locationAt, unlockBody } from './helpers/platform.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const MALIBU = '1G1ZE5ST5KF100231';
const WINDOW_MS = 60_000;
const RELOCK_AFTER_MS = 90_000;

let stack: Stack;
let admin: Call;
let car: SeedVehicle;
let locationId: string;
const sent: WebhookRequest[] = [];

beforeAll(async () => {
  stack = await startStack(
    {},
    {
      gateway: {
        // No network: the test reads what the dispatcher would have sent.
        webhooks: {
          policy: { pollMs: 50 },
          send: async (req) => {
            sent.push(req);
            return { status: 204 };
          },
        },
      },
    },
  );
  admin = callWithKey(stack, stack.apiKey);
  car = stack.seeds.vehicles.find((v) => v.vin === MALIBU) as SeedVehicle;
  await link(admin, car);
  locationId = await locationAt(admin, car);
});
afterAll(async () => {
  await stack?.close();
});

/** A delivery whose window opened a minute ago and closes WINDOW_MS from now (real time). */
async function schedule(options: { park?: boolean } = {}): Promise<string> {
  const now = Date.now();
  const r = await admin(
    'POST',
    '/v1/deliveries',
    deliveryBody(car, locationId, {
      window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + WINDOW_MS).toISOString() },
    }),
  );
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  if (options.park) expect((await admin('POST', `/v1/deliveries/${r.body.id}/parking`)).status).toBe(200);
  return r.body.id;
}

/** One sweep with the watchdog's clock `ms` ahead (only the watchdog's: requests and tokens keep real time). */
async function sweepAfter(ms: number) {
  stack.advanceWatchdog(ms);
  try {
    return await stack.gateway.watchdog.sweep();
  } finally {
    stack.advanceWatchdog(-ms);
  }
}

const view = async (id: string) => (await admin('GET', `/v1/deliveries/${id}`)).body;
const kinds = async (id: string): Promise<string[]> =>
  (await view(id)).timeline.map((e: { kind: string }) => e.kind);
const eventsOf = (id: string) => stack.events.filter((e) => e.deliveryId === id).map((e) => e.type);
const commandsTo = (vin: string) => stack.published.filter((p) => p.topic === commandTopic(vin)).length;

describe('a delivery whose window passes unused', () => {
  it('ends expired at the first sweep after its window: delivery_expired on the timeline, delivery.expired', async () => {
    expect(EVENT_TYPES).toContain('delivery.expired');
    const sub = await admin('POST', '/v1/webhooks', {
      url: 'https://hooks.example.com/curbside',
      events: ['delivery.expired'],
      ownerId: car.ownerId,
    });
    expect(sub.status, JSON.stringify(sub.body)).toBe(201);
    const id = await schedule();

    // Still inside the window on the watchdog's clock: nothing to do.
    expect(await sweepAfter(WINDOW_MS - 5_000)).toEqual([]);
    expect((await view(id)).status).toBe('scheduled');

    expect(await sweepAfter(WINDOW_MS + 1_000)).toEqual([{ deliveryId: id, outcome: 'expired' }]);
    const expired = await view(id);
    expect(expired.status).toBe('expired');
    expect(expired.timeline.at(-1)).toMatchObject({
      kind: 'delivery_expired',
      outcome: 'info',
      code: null,
      detail: { windowEnd: Date.parse(expired.window.end) },
    });
    expect(eventsOf(id)).toEqual(['delivery.scheduled', 'delivery.expired']);
    await expect
      .poll(() => sent.map((r) => JSON.parse(r.body)).filter((b) => b.deliveryId === id), { timeout: 5_000 })
      .toEqual([expect.objectContaining({ type: 'delivery.expired', vin: MALIBU, ownerId: car.ownerId })]);

    // Idempotent: later sweeps find nothing, and the timeline holds one expiry.
    expect(await sweepAfter(WINDOW_MS + 10_000)).toEqual([]);
    expect((await kinds(id)).filter((k) => k === 'delivery_expired')).toHaveLength(1);
    expect(eventsOf(id).filter((t) => t === 'delivery.expired')).toHaveLength(1);
  });

  it('is over: an unlock (real time still inside the window) is refused and nothing is sent; cancel too', async () => {
    const id = await schedule({ park: true });
    expect(await sweepAfter(WINDOW_MS + 1_000)).toEqual([{ deliveryId: id, outcome: 'expired' }]);
    const before = commandsTo(MALIBU);
    const unlock = await admin('POST', `/v1/deliveries/${id}/unlock`, unlockBody(car));
    expect(unlock.status).toBe(409);
    expect(unlock.body).toMatchObject({ code: 'DELIVERY_NOT_ACTIVE', mayHaveSucceeded: false });
    expect(commandsTo(MALIBU)).toBe(before);
    expect((await kinds(id)).at(-1)).toBe('unlock_requested');
    expect((await admin('POST', `/v1/deliveries/${id}/cancel`, {})).body.code).toBe('DELIVERY_NOT_ACTIVE');
    expect((await view(id)).status).toBe('expired');
  });

  it('expires once when two expiries race (a conditional update on the status)', async () => {
    const id = await schedule();
    const asOf = Date.now() + WINDOW_MS + 1_000;
    const results = await Promise.all([
      stack.gateway.deliveries.expire(id, asOf),
      stack.gateway.deliveries.expire(id, asOf),
    ]);
    expect(results.sort()).toEqual([false, true]);
    expect((await kinds(id)).filter((k) => k === 'delivery_expired')).toHaveLength(1);
    // Not before its window ends, whoever asks.
    const other = await schedule();
    expect(await stack.gateway.deliveries.expire(other, Date.now())).toBe(false);
    expect((await view(other)).status).toBe('scheduled');
    expect(await sweepAfter(WINDOW_MS + 1_000)).toEqual([{ deliveryId: other, outcome: 'expired' }]);
  });
});

describe('a delivery that was opened', () => {
  it('is not expired past its window: its relock is the watchdog job, which completes it', async () => {
    const id = await schedule({ park: true });
    expect((await admin('POST', `/v1/deliveries/${id}/unlock`, unlockBody(car))).status).toBe(200);
    // Past the window, not yet RELOCK_AFTER_S after the unlock: nothing.
    expect(await sweepAfter(WINDOW_MS + 1_000)).toEqual([]);
    expect((await view(id)).status).toBe('unlocked');
    expect(await sweepAfter(RELOCK_AFTER_MS + 1_000)).toEqual([{ deliveryId: id, outcome: 'locked' }]);
    expect((await view(id)).status).toBe('completed');
    expect(await kinds(id)).not.toContain('delivery_expired');
  });

  it('an unlock in flight when the window ends keeps it from expiring', async () => {
    const id = await schedule({ park: true });
    const sentBefore = commandsTo(MALIBU);
    const unlocking = admin('POST', `/v1/deliveries/${id}/unlock`, unlockBody(car));
    // The unlock has reserved its use and published its command when the watchdog's clock passes the window.
    await expect.poll(() => commandsTo(MALIBU), { timeout: 5_000, interval: 1 }).toBeGreaterThan(sentBefore);
    const swept = await sweepAfter(WINDOW_MS + 1_000);
    expect((await unlocking).status).toBe(200);
    expect(swept).toEqual([]);
    expect((await view(id)).status).toBe('unlocked');
    await admin('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' });
    expect((await view(id)).status).toBe('completed');
  });
});

// The fleet console's HTTP side: its page, the lists and the live stream scoped by the API key exactly like the
// rest of the API, the simulator actions (owner or admin, a stable code without a simulator), and its map math.
import { readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseGrant } from '../gateway/access/api-keys.ts';
import { createAssets, PAGE_DIR } from '../gateway/console/assets.ts';
import { type ConsoleSubscriber, createConsoleHub } from '../gateway/console/hub.ts';
import { fitProjection } from '../gateway/console/page/projection.ts';
import { createSimulatorControl } from '../gateway/console/simulator.ts';
import { ApiError } from '../gateway/errors.ts';
import { createLogger } from '../gateway/platform/logger.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import { type Call, callWithKey, deliveryBody, locationAt, vehicleOf } from './helpers/platform.ts';
import { type Stack, startStack } from './helpers/stack.ts';

let stack: Stack;
let base: string;
let ada: SeedVehicle;
let ben: SeedVehicle;
const keys: Record<string, string> = {};
const as: Record<string, Call> = {};
let d1: string; // acme's delivery into Ada's car
let d2: string; // zed's delivery into Ben's car
const logLines: string[] = [];

const call = (who: string): Call => {
  const c = as[who];
  if (!c) throw new Error(`no caller ${who}`);
  return c;
};

async function keyFor(
  name: string,
  scopes: string[],
  binding: { ownerId?: string; carrierId?: string } = {},
) {
  keys[name] = await stack.gateway.createApiKey(name, parseGrant({ scopes, ...binding }));
  as[name] = callWithKey(stack, keys[name]);
}

async function linkWithConsent(who: string, v: SeedVehicle): Promise<void> {
  const r = await call(who)('POST', '/v1/vehicles', {
    vin: v.vin,
    make: v.make,
    model: v.model,
    year: v.year,
    provider: v.provider,
    ownerId: v.ownerId,
    consent: ['unlock', 'lock'],
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
}

interface Frame {
  type: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read frames by shape.
  data: any;
}

interface OpenStream {
  status: number;
  frames: Frame[];
  ended: () => boolean;
  /** Resolves with the first frame (in order) that matches, waiting for it. */
  next(match: (f: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  close(): void;
}

/**
 * Reads the stream as the page does, with the key in the Authorization header. Through node:http rather than
 * fetch(): an aborted fetch leaves undici holding a fresh idle connection, which would keep the gateway's close
 * waiting; here closing destroys the one socket.
 */
function openStream(headers: Record<string, string>, path = '/v1/console/events'): Promise<OpenStream> {
  return new Promise((resolve, reject) => {
    const req = httpGet(`${base}${path}`, { headers, agent: false }, (res) => {
      const frames: Frame[] = [];
      let ended = false;
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let cut = buffer.indexOf('\n\n'); cut !== -1; cut = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const type = /^event: (.+)$/m.exec(block)?.[1];
          const data = /^data: (.+)$/m.exec(block)?.[1];
          if (type && data) frames.push({ type, data: JSON.parse(data) });
        }
      });
      res.on('close', () => {
        ended = true;
      });
      resolve({
        status: res.statusCode ?? 0,
        frames,
        ended: () => ended,
        async next(match, timeoutMs = 5_000) {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const found = frames.find(match);
            if (found) return found;
            if (Date.now() > deadline)
              throw new Error(`no such frame; got ${frames.map((f) => f.type).join(', ')}`);
            await new Promise((r) => setTimeout(r, 10));
          }
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

const bearer = (name: string) => ({ authorization: `Bearer ${keys[name]}` });

beforeAll(async () => {
  stack = await startStack(
    // The webhook receiver of these tests listens on loopback: the operator's allowlist lets it through.
    { WEBHOOK_ALLOW_PRIVATE: '127.0.0.1/32' },
    {
      simulatorControl: true,
      // The gateway's own logger (its serializers and scrubbing), at info: every request is on a line.
      logger: createLogger({ level: 'info', destination: { write: (line: string) => logLines.push(line) } }),
      gateway: { console: { heartbeatMs: 100 } },
    },
  );
  base = await stack.gateway.app.listen({ host: '127.0.0.1', port: 0 });
  keys.admin = stack.apiKey;
  as.admin = callWithKey(stack, stack.apiKey);
  ada = vehicleOf(stack, 'owner-ada');
  ben = vehicleOf(stack, 'owner-ben');
  await keyFor('customerAda', ['customer'], { ownerId: 'owner-ada' });
  await keyFor('customerBen', ['customer'], { ownerId: 'owner-ben' });
  await keyFor('carrierAcme', ['carrier'], { carrierId: 'carrier-acme' });
  await keyFor('carrierZed', ['carrier'], { carrierId: 'carrier-zed' });
  await keyFor('reviewerAda', ['reviewer'], { ownerId: 'owner-ada' });
  await keyFor('reviewerAll', ['reviewer']);
  await linkWithConsent('customerAda', ada);
  await linkWithConsent('customerBen', ben);
  const locAda = await locationAt(call('customerAda'), ada);
  const locBen = await locationAt(call('customerBen'), ben);
  const r1 = await call('carrierAcme')('POST', '/v1/deliveries', deliveryBody(ada, locAda));
  const r2 = await call('carrierZed')('POST', '/v1/deliveries', deliveryBody(ben, locBen));
  expect([r1.status, r2.status]).toEqual([201, 201]);
  d1 = r1.body.id;
  d2 = r2.body.id;
  for (const who of ['customerAda', 'carrierAcme']) {
    const w = await call(who)('POST', '/v1/webhooks', {
      url: 'http://127.0.0.1:9/hook',
      events: ['access.denied', 'delivery.scheduled'],
    });
    expect(w.status, JSON.stringify(w.body)).toBe(201);
  }
  // One event each subscription hears: an unlock refused before parking is confirmed.
  await call('admin')('POST', `/v1/deliveries/${d1}/unlock`, {
    driverId: 'driver-7',
    position: ada.position,
    packageId: 'pkg-1',
  });
});

afterAll(async () => {
  await stack?.close();
});

describe('the page', () => {
  it('is served without a key, with a policy that allows only its own files', async () => {
    const res = await stack.gateway.app.inject({ method: 'GET', url: '/console' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.body).toContain('<script type="module" src="/console/main.ts">');
  });

  it('serves its TypeScript as JavaScript, types stripped, and nothing outside its folder', async () => {
    const js = await stack.gateway.app.inject({ method: 'GET', url: '/console/state.ts' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    expect(js.body).toContain('function createState(');
    expect(js.body).not.toMatch(/import type|: ConsoleVehicle/);
    for (const url of ['/console/nope.ts', '/console/tsconfig.json', '/console/..%2Fschemas.ts']) {
      const res = await stack.gateway.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
    }
  });

  it('preloads every module of the page, so they load side by side', () => {
    const html = readFileSync(join(PAGE_DIR, 'index.html'), 'utf8');
    const modules = createAssets()
      .names()
      .filter((n) => n.endsWith('.ts') && n !== 'main.ts');
    expect(modules.length).toBeGreaterThan(5);
    for (const m of modules) expect(html).toContain(`<link rel="modulepreload" href="/console/${m}">`);
  });

  it('keeps every list and the stream behind the key: 401 without one', async () => {
    for (const url of [
      '/v1/console/me',
      '/v1/console/vehicles',
      '/v1/console/deliveries',
      '/v1/console/events',
    ]) {
      const res = await stack.gateway.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(401);
      expect(JSON.parse(res.body).code).toBe('UNAUTHENTICATED');
    }
  });
});

describe('the lists follow the key, as the rest of the API does', () => {
  it('tells the page what the key sees', async () => {
    const me = async (who: string) => (await call(who)('GET', '/v1/console/me')).body.sees;
    expect(await me('admin')).toEqual({ vehicles: true, deliveries: true, webhooks: true, simulator: true });
    expect(await me('customerAda')).toEqual({
      vehicles: true,
      deliveries: false,
      webhooks: true,
      simulator: true,
    });
    expect(await me('carrierAcme')).toEqual({
      vehicles: false,
      deliveries: true,
      webhooks: true,
      simulator: false,
    });
    expect(await me('reviewerAll')).toEqual({
      vehicles: false,
      deliveries: true,
      webhooks: false,
      simulator: false,
    });
  });

  it("gives an owner's key its own cars and locations only", async () => {
    const mine = await call('customerAda')('GET', '/v1/console/vehicles');
    expect(mine.status).toBe(200);
    expect(mine.body.vehicles.map((v: { vin: string }) => v.vin)).toEqual([ada.vin]);
    expect(new Set(mine.body.locations.map((l: { ownerId: string }) => l.ownerId))).toEqual(
      new Set(['owner-ada']),
    );
    const all = await call('admin')('GET', '/v1/console/vehicles');
    expect(all.body.vehicles.map((v: { vin: string }) => v.vin).sort()).toEqual([ada.vin, ben.vin].sort());
  });

  it("gives a carrier its own deliveries with their timelines, and a bound reviewer those into its owner's cars", async () => {
    const acme = await call('carrierAcme')('GET', '/v1/console/deliveries');
    expect(acme.body.deliveries.map((d: { id: string }) => d.id)).toEqual([d1]);
    expect(
      acme.body.deliveries[0].timeline.map((e: { kind: string; code: string | null }) => [e.kind, e.code]),
    ).toEqual([
      ['delivery_scheduled', null],
      ['unlock_requested', 'PARKING_NOT_CONFIRMED'],
    ]);
    expect(
      (await call('carrierZed')('GET', '/v1/console/deliveries')).body.deliveries.map(
        (d: { id: string }) => d.id,
      ),
    ).toEqual([d2]);
    expect(
      (await call('reviewerAda')('GET', '/v1/console/deliveries')).body.deliveries.map(
        (d: { id: string }) => d.id,
      ),
    ).toEqual([d1]);
    const everyone = await call('reviewerAll')('GET', '/v1/console/deliveries?limit=1');
    expect(everyone.body.deliveries).toHaveLength(1);
  });

  it('refuses a list to a key without the scope of the route that serves the same records', async () => {
    for (const [who, url] of [
      ['carrierAcme', '/v1/console/vehicles'],
      ['customerAda', '/v1/console/deliveries'],
      ['reviewerAll', '/v1/console/vehicles'],
      ['reviewerAll', '/v1/console/webhook-deliveries'],
    ] as const) {
      const r = await call(who)('GET', url);
      expect(r.status, `${who} ${url}`).toBe(403);
      expect(r.body.code).toBe('SCOPE_MISSING');
    }
  });

  it("shows each subscriber its own webhook deliveries, with attempts, and never the receiver's path", async () => {
    const list = async (who: string) =>
      (await call(who)('GET', '/v1/console/webhook-deliveries')).body.webhookDeliveries as Array<{
        eventType: string;
        origin: string;
        attempts: number;
        deliveryId: string;
      }>;
    const ada = await list('customerAda');
    const acme = await list('carrierAcme');
    // Both subscribed after the delivery was scheduled: each heard the refused unlock, into Ada's car by Acme.
    expect(ada.map((w) => w.eventType)).toEqual(['access.denied']);
    expect(acme.map((w) => w.eventType)).toEqual(['access.denied']);
    expect(acme[0]?.attempts).toBeGreaterThanOrEqual(0);
    expect(ada[0]).toMatchObject({ origin: 'http://127.0.0.1:9', deliveryId: d1 });
    expect(JSON.stringify([...ada, ...acme])).not.toContain('/hook');
    expect(await list('customerBen')).toEqual([]);
    expect(await list('carrierZed')).toEqual([]);
  });
});

describe('the live stream', () => {
  it('needs the key in the Authorization header: none, or one in the URL, is refused', async () => {
    expect((await openStream({})).status).toBe(401);
    const inUrl = await openStream({}, `/v1/console/events?key=${encodeURIComponent(keys.admin as string)}`);
    expect(inUrl.status).toBe(401);
  });

  it("sends each key only what it may see: a carrier its deliveries, an owner its cars, never another's", async () => {
    const acme = await openStream(bearer('carrierAcme'));
    const zed = await openStream(bearer('carrierZed'));
    const owner = await openStream(bearer('customerAda'));
    try {
      for (const s of [acme, zed, owner]) await s.next((f) => f.type === 'ready');
      // Zed's delivery and Ben's car change first, then Acme's and Ada's: once the later frames have arrived,
      // the earlier ones would have too, had they been sent.
      expect((await call('customerBen')('POST', `/v1/deliveries/${d2}/block`, { reason: 'z' })).status).toBe(
        200,
      );
      expect(
        (await call('admin')('POST', `/v1/console/vehicles/${ben.vin}/simulator`, { op: 'report' })).status,
      ).toBe(200);
      expect((await call('customerAda')('POST', `/v1/deliveries/${d1}/block`, { reason: 'a' })).status).toBe(
        200,
      );
      expect(
        (await call('admin')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, { op: 'report' })).status,
      ).toBe(200);

      const blocked = await acme.next((f) => f.type === 'delivery' && f.data.blocked === true);
      expect(blocked.data.id).toBe(d1);
      expect(blocked.data.timeline.at(-1)).toMatchObject({ kind: 'access_blocked' });
      await zed.next((f) => f.type === 'delivery' && f.data.id === d2 && f.data.blocked === true);
      await owner.next((f) => f.type === 'vehicle' && f.data.vin === ada.vin);

      expect(acme.frames.filter((f) => f.type === 'delivery').map((f) => f.data.id)).not.toContain(d2);
      expect(acme.frames.some((f) => f.type === 'vehicle')).toBe(false);
      expect(zed.frames.filter((f) => f.type === 'delivery').map((f) => f.data.id)).not.toContain(d1);
      expect(owner.frames.some((f) => f.type === 'delivery')).toBe(false);
      expect(owner.frames.filter((f) => f.type === 'vehicle').map((f) => f.data.vin)).not.toContain(ben.vin);
    } finally {
      for (const s of [acme, zed, owner]) s.close();
      await call('customerAda')('POST', `/v1/deliveries/${d1}/unblock`, {});
      await call('customerBen')('POST', `/v1/deliveries/${d2}/unblock`, {});
    }
  });

  it('reports a change made by a request that emits no domain event (an owner blocking a delivery)', async () => {
    const zed = await openStream(bearer('carrierZed'));
    try {
      await zed.next((f) => f.type === 'ready');
      expect((await call('customerBen')('POST', `/v1/deliveries/${d2}/block`, { reason: 'r' })).status).toBe(
        200,
      );
      const frame = await zed.next((f) => f.type === 'delivery' && f.data.blocked === true);
      expect(frame.data).toMatchObject({
        id: d2,
        timeline: expect.arrayContaining([expect.objectContaining({ kind: 'access_blocked' })]),
      });
    } finally {
      zed.close();
      await call('customerBen')('POST', `/v1/deliveries/${d2}/unblock`, {});
    }
  });

  it('ends the stream of a key revoked meanwhile, with UNAUTHENTICATED', async () => {
    await keyFor('toRevoke', ['reviewer']);
    const s = await openStream(bearer('toRevoke'));
    await s.next((f) => f.type === 'ready');
    await stack.gateway.store.db
      .updateTable('api_keys')
      .set({ revoked_at: Date.now() })
      .where('label', '=', 'toRevoke')
      .execute();
    const end = await s.next((f) => f.type === 'end');
    expect(end.data.code).toBe('UNAUTHENTICATED');
    await expect.poll(() => s.ended()).toBe(true);
  });

  it('allows a key a few streams at once, then 429 RATE_LIMITED', async () => {
    await keyFor('many', ['reviewer']);
    const open = [];
    for (let i = 0; i < 4; i++) {
      const s = await openStream(bearer('many'));
      expect(s.status).toBe(200);
      open.push(s);
    }
    const fifth = await openStream(bearer('many'));
    expect(fifth.status).toBe(429);
    fifth.close();
    for (const s of open) s.close();
  });

  it('ends every stream with SHUTTING_DOWN when the gateway closes', () => {
    const hub = createConsoleHub({ db: stack.gateway.store.db, logger: pino({ level: 'silent' }) });
    const ended: string[] = [];
    const subscriber: ConsoleSubscriber = {
      caller: { keyId: 'k', scopes: ['admin'], ownerId: null, carrierId: null },
      send: () => true,
      end: (code) => ended.push(code),
    };
    expect(hub.subscribe(subscriber)).not.toBeNull();
    hub.close();
    expect(ended).toEqual(['SHUTTING_DOWN']);
    expect(hub.subscribe(subscriber)).toBeNull();
  });
});

describe('driving the simulated cars', () => {
  const door = { op: 'door', door: 'driver', to: 'open' } as const;

  it("lets the car's owner and an admin act on it, through the simulator's control API", async () => {
    const r = await call('customerAda')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, door);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.car.state.doors.driver).toBe('open');
    expect(stack.fleet.car(ada.vin).car.snapshot().doors.driver).toBe('open');
    const back = await call('admin')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, {
      ...door,
      to: 'closed',
    });
    expect(back.body.car.state.doors.driver).toBe('closed');
    const drained = await call('admin')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, {
      op: 'battery',
      level: 'low',
    });
    expect(drained.body.car.faults.battery).toBe('low');
    await call('admin')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, { op: 'battery', level: 'ok' });
    const skewed = await call('admin')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, {
      op: 'clock',
      jumpMs: 60_000,
    });
    expect(skewed.body.car.faults.clock.offsetMs).toBe(60_000);
    await call('admin')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, {
      op: 'clock',
      jumpMs: -60_000,
    });
    const seen = await call('customerAda')('GET', `/v1/console/vehicles/${ada.vin}/simulator`);
    expect(seen.body).toMatchObject({
      vin: ada.vin,
      connected: true,
      faults: { link: 'online', battery: 'ok' },
    });
  });

  it("hides another owner's car (404, as a missing one) and refuses keys without the vehicles scope", async () => {
    const other = await call('customerBen')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, door);
    expect(other.status).toBe(404);
    expect(other.body.code).toBe('NOT_FOUND');
    for (const who of ['carrierAcme', 'reviewerAll']) {
      const r = await call(who)('POST', `/v1/console/vehicles/${ada.vin}/simulator`, door);
      expect(r.status, who).toBe(403);
      expect(r.body.code).toBe('SCOPE_MISSING');
    }
    expect(stack.fleet.car(ada.vin).car.snapshot().doors.driver).toBe('closed');
  });

  it('accepts only the console actions: a reboot or a fault plan is a 400', async () => {
    for (const body of [{ op: 'reboot', downMs: 10 }, { op: 'faults', acks: { drop: 1 } }, { op: 'clock' }]) {
      const r = await call('admin')('POST', `/v1/console/vehicles/${ada.vin}/simulator`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.code).toBe('VALIDATION_FAILED');
    }
  });

  it("says SIMULATOR_UNREACHABLE when nothing answers and SIMULATOR_REFUSED with the simulator's code", async () => {
    const closed = createSimulatorControl({ url: 'http://127.0.0.1:9', timeoutMs: 2_000 });
    const unreachable = await closed.apply(ada.vin, door).catch((e: unknown) => e);
    expect(unreachable).toBeInstanceOf(ApiError);
    expect(unreachable).toMatchObject({
      code: 'SIMULATOR_UNREACHABLE',
      status: 502,
      mayHaveSucceeded: false,
    });
    const refusing = createSimulatorControl({
      url: 'http://sim.invalid',
      fetch: async () =>
        new Response(JSON.stringify({ code: 'SIM_UNKNOWN_VIN', message: 'not simulated' }), { status: 404 }),
    });
    const refused = await refusing.apply(ada.vin, door).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: 'SIMULATOR_REFUSED',
      status: 409,
      extra: { simulatorCode: 'SIM_UNKNOWN_VIN' },
    });
  });

  it('writes no API key into the log, streams and actions included', () => {
    expect(logLines.length).toBeGreaterThan(10);
    for (const key of Object.values(keys)) expect(logLines.filter((l) => l.includes(key))).toEqual([]);
  });
});

describe('without a simulator', () => {
  let plain: Stack;
  beforeAll(async () => {
    plain = await startStack();
    const v = vehicleOf(plain, 'owner-ada');
    const r = await plain.request('POST', '/v1/vehicles', {
      vin: v.vin,
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      ownerId: v.ownerId,
      consent: ['unlock', 'lock'],
    });
    expect(r.status).toBe(201);
  });
  afterAll(async () => {
    await plain?.close();
  });

  it('refuses every action with 501 SIMULATOR_NOT_CONFIGURED, and the page offers none', async () => {
    const vin = vehicleOf(plain, 'owner-ada').vin;
    const act = await plain.request('POST', `/v1/console/vehicles/${vin}/simulator`, { op: 'report' });
    expect(act.status).toBe(501);
    expect(act.body).toMatchObject({ code: 'SIMULATOR_NOT_CONFIGURED', retryable: false });
    expect((await plain.request('GET', `/v1/console/vehicles/${vin}/simulator`)).body.code).toBe(
      'SIMULATOR_NOT_CONFIGURED',
    );
    expect((await plain.request('GET', '/v1/console/me')).body.sees.simulator).toBe(false);
  });
});

describe('the map projection', () => {
  const seattle = [
    { lat: 47.6114, lon: -122.3381, radiusM: 200 },
    { lat: 47.62, lon: -122.35 },
    { lat: 47.6, lon: -122.32 },
  ];

  it('fits every point and its radius inside the canvas less the padding', () => {
    const p = fitProjection(seattle, 800, 400, 20);
    if (!p) throw new Error('no projection');
    for (const pt of seattle) {
      const r = p.metresToPx(pt.radiusM ?? 0, pt.lat);
      expect(p.x(pt.lon) - r).toBeGreaterThanOrEqual(20 - 1e-6);
      expect(p.x(pt.lon) + r).toBeLessThanOrEqual(780 + 1e-6);
      expect(p.y(pt.lat) - r).toBeGreaterThanOrEqual(20 - 1e-6);
      expect(p.y(pt.lat) + r).toBeLessThanOrEqual(380 + 1e-6);
      expect(p.contains(pt)).toBe(true);
    }
    expect(p.contains({ lat: 48.5, lon: -122.3 })).toBe(false);
  });

  it('keeps the ground square: 1 km east and 1 km north take the same pixels, north is up', () => {
    const p = fitProjection(seattle, 800, 400);
    if (!p) throw new Error('no projection');
    const lat = 47.61;
    const east = p.x(-122.33 + 1 / (111.32 * Math.cos((lat * Math.PI) / 180))) - p.x(-122.33);
    const north = p.y(lat) - p.y(lat + 1 / 110.574);
    expect(Math.abs(east / north - 1)).toBeLessThan(0.01);
    expect(Math.abs(p.metresToPx(1000, lat) / east - 1)).toBeLessThan(0.01);
  });

  it('draws one car at a sane zoom, and nothing at all without points', () => {
    const one = fitProjection([{ lat: 47.61, lon: -122.33 }], 600, 600);
    expect(one?.metresToPx(100, 47.61)).toBeGreaterThan(10);
    expect(one?.metresToPx(100, 47.61)).toBeLessThan(600);
    expect(fitProjection([], 600, 600)).toBeNull();
  });
});

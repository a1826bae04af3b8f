// Logs: every secret kind goes through a real request and a real command, and the captured log is searched for it.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../gateway/platform/logger.ts';
import { type Command, commandTopic } from '../protocols/index.ts';
import { providerAdapter } from '../protocols/providers/index.ts';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { captureLogs, type LogCapture } from './helpers/logs.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const WEBHOOK_SECRET = 'whsec_9f8e7d6c5b4a39281706f5e4d3c2b1a0';
const COOKIE = 'session=s3ss10n-v4lu3-th4t-must-n0t-l34k';

let logs: LogCapture;
let stack: Stack;
let vehicle: SeedVehicle;
let location: SeedLocation;

beforeAll(async () => {
  logs = captureLogs();
  const logger = createLogger({ level: 'trace', destination: logs.stream });
  stack = await startStack({}, { logger, carLogger: logger.child({ component: 'car' }) });
  vehicle = stack.seeds.vehicles.find((v) => v.make === 'Buick') as SeedVehicle;
  location = stack.seeds.locations.find((l) => l.ownerId === vehicle.ownerId) as SeedLocation;
  const linked = await stack.request('POST', '/v1/vehicles', {
    vin: vehicle.vin,
    make: vehicle.make,
    model: vehicle.model,
    year: vehicle.year,
    provider: vehicle.provider,
    ownerId: vehicle.ownerId,
    consent: ['unlock', 'lock'],
  });
  expect(linked.status).toBe(201);
});

afterAll(async () => {
  await stack?.close();
});

/** Schedules a delivery, unlocks and locks it: real commands to a real simulated car over mTLS. */
async function deliver(): Promise<{ deliveryId: string; commands: Command[] }> {
  const loc = await stack.request('POST', '/v1/locations', {
    ownerId: location.ownerId,
    label: location.label,
    kind: location.kind,
    lat: location.lat,
    lon: location.lon,
    radiusM: 200,
    access: 'public',
  });
  const now = Date.now();
  const d = await stack.request('POST', '/v1/deliveries', {
    vin: vehicle.vin,
    locationId: loc.body.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  expect(d.status).toBe(201);
  // The car confirms it is parked at the location before anything opens (PROTOCOL.md §3.5).
  expect((await stack.request('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
  const before = stack.published.length;
  const unlock = await stack.request('POST', `/v1/deliveries/${d.body.id}/unlock`, {
    driverId: 'driver-7',
    position: { lat: location.lat, lon: location.lon },
    packageId: 'pkg-1',
  });
  expect(unlock.status).toBe(200);
  const lock = await stack.request('POST', `/v1/deliveries/${d.body.id}/lock`, { driverId: 'driver-7' });
  expect(lock.status).toBe(200);
  const commands = stack.published
    .slice(before)
    .filter((p) => p.topic === commandTopic(vehicle.vin))
    .map((p) => providerAdapter(vehicle.provider).decodeToCar(p.payload))
    .filter((m): m is Command => m.type === 'command');
  expect(commands.map((c) => c.action)).toEqual(['unlock', 'lock']);
  return { deliveryId: d.body.id, commands };
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('base64url');

/** The base64 lines of a PEM private key: any of them in a log would be a leak. */
function pemBody(path: string): string[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('-----'));
}

describe('secrets never reach a log line', () => {
  it('a request with a key, a cookie, a webhook secret and a token in the query', async () => {
    const r = await stack.gateway.app.inject({
      method: 'POST',
      url: `/v1/vehicles?token=${WEBHOOK_SECRET}`,
      headers: {
        authorization: `Bearer ${stack.apiKey}`,
        cookie: COOKIE,
        'x-webhook-secret': WEBHOOK_SECRET,
        'x-request-id': 'req-logs-1',
      },
      payload: { vin: vehicle.vin, webhook: { url: 'https://example.test/h', secret: WEBHOOK_SECRET } },
    });
    expect(r.statusCode).toBe(400);
    // The request id comes back in the header and the problem body, and is the one in the log.
    expect(r.headers['x-request-id']).toBe('req-logs-1');
    expect(JSON.parse(r.body).requestId).toBe('req-logs-1');

    const unknownKey = `ck_${'Z'.repeat(32)}`;
    const refused = await stack.gateway.app.inject({
      method: 'GET',
      url: '/v1/vehicles',
      headers: { authorization: `Bearer ${unknownKey}` },
    });
    expect(refused.statusCode).toBe(401);

    const text = logs.text();
    const lines = logs.lines().filter((l) => l.requestId === 'req-logs-1');
    expect(lines.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['incoming request', 'request completed']),
    );
    // The headers were logged, by name: proof that redaction, not silence, kept the values out.
    expect(JSON.stringify(lines)).toContain('"authorization":"[redacted]"');
    expect(JSON.stringify(lines)).toContain('"x-webhook-secret":"[redacted]"');
    expect(JSON.stringify(lines)).toContain('"url":"/v1/vehicles?token=[redacted]"');
    for (const secret of [stack.apiKey, unknownKey, WEBHOOK_SECRET, COOKIE, 's3ss10n-v4lu3']) {
      expect(text).not.toContain(secret);
    }
  });

  it('a real unlock and lock: the token appears only as its SHA-256', async () => {
    const { deliveryId, commands } = await deliver();
    const text = logs.text();
    for (const command of commands) {
      const [, claims, signature] = command.token.split('.') as [string, string, string];
      expect(text).not.toContain(command.token);
      expect(text).not.toContain(claims);
      expect(text).not.toContain(signature);
      const sent = logs.lines().find((l) => l.event === 'command.sent' && l.commandId === command.commandId);
      expect(sent).toMatchObject({ deliveryId, action: command.action, tokenSha256: sha256(command.token) });
    }
    expect(text).not.toContain(stack.apiKey);
  });

  it('no private key of the PKI, and nothing shaped like one', () => {
    const text = logs.text();
    const dir = stack.pki.dir;
    const keys = [
      ...['ca.key', 'broker.key', 'gateway.key', 'token-signing.key'].map((f) => join(dir, f)),
      ...readdirSync(join(dir, 'vehicles'))
        .filter((f) => f.endsWith('.key'))
        .map((f) => join(dir, 'vehicles', f)),
    ];
    expect(keys.length).toBeGreaterThan(4);
    for (const key of keys) for (const line of pemBody(key)) expect(text).not.toContain(line);
    expect(text).not.toContain('PRIVATE KEY');
  });
});

describe('following one delivery', () => {
  it('every command and ack line carries the delivery id and the command id', async () => {
    const { deliveryId, commands } = await deliver();
    const events = logs
      .lines()
      .filter((l) => typeof l.event === 'string' && /^(command|ack)\./.test(l.event as string));
    for (const line of events) {
      expect(typeof line.deliveryId, JSON.stringify(line)).toBe('string');
      expect(typeof line.commandId, JSON.stringify(line)).toBe('string');
    }
    for (const command of commands) {
      const mine = events.filter((l) => l.commandId === command.commandId);
      expect(mine.map((l) => l.event)).toEqual(['command.sent', 'ack.received']);
      expect(mine.every((l) => l.deliveryId === deliveryId)).toBe(true);
      expect(mine[1]).toMatchObject({ outcome: 'executed', action: command.action });
      // The car's side of the same command.
      const car = logs.lines().find((l) => l.component === 'car' && l.commandId === command.commandId);
      expect(car).toMatchObject({
        msg: 'command handled',
        deliveryId,
        vin: vehicle.vin,
        outcome: 'executed',
      });
    }
  });

  it('every request line carries the request id, generated when the caller sends none', async () => {
    const r = await stack.gateway.app.inject({ method: 'GET', url: '/healthz' });
    const id = r.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const requestLines = logs
      .lines()
      .filter((l) => l.msg === 'incoming request' || l.msg === 'request completed');
    expect(requestLines.length).toBeGreaterThan(4);
    for (const line of requestLines) expect(typeof line.requestId).toBe('string');
    expect(requestLines.filter((l) => l.requestId === id)).toHaveLength(2);
  });
});

describe('the logger', () => {
  it('censors secret fields at any depth and secret-shaped values under any name', () => {
    const capture = captureLogs();
    const logger = createLogger({ level: 'info', destination: capture.stream });
    const pem = readFileSync(stack.pki.gatewayKey, 'utf8');
    const token = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxRzFaRTVTVDVLRjEwMDIzMSJ9.c2lnbmF0dXJlLWJ5dGVz';
    logger.info({
      apiKey: stack.apiKey,
      webhook: { secret: WEBHOOK_SECRET, signingSecret: WEBHOOK_SECRET },
      req: { headers: { authorization: `Bearer ${stack.apiKey}` } },
      a: { b: { token, password: 'hunter2-hunter2' } },
      detail: { note: `key follows ${pem}`, seen: `header Bearer ${stack.apiKey}` },
    });
    logger.error({ err: new Error(`refused token ${token} from ${WEBHOOK_SECRET}`) }, `token ${token}`);
    const text = capture.text();
    for (const secret of [stack.apiKey, WEBHOOK_SECRET, token, 'hunter2', ...pemBody(stack.pki.gatewayKey)]) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('[redacted-private-key]');
    expect(text).toContain('[redacted-token]');
    expect(capture.lines()).toHaveLength(2);
  });

  it('honours LOG_LEVEL', () => {
    const capture = captureLogs();
    const logger = createLogger({ level: 'warn', destination: capture.stream });
    logger.info('quiet');
    logger.warn('loud');
    expect(capture.lines().map((l) => [l.level, l.msg])).toEqual([[40, 'loud']]);
  });
});

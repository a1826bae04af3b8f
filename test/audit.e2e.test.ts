// The audit trail through the whole stack: a real delivery logged, checkpointed, proven, exported and verified offline.
import { createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditCliIo, runAuditCli } from '../audit/cli.ts';
import { exportFromStore } from '../audit/export.ts';
import { parseConfig } from '../gateway/platform/config.ts';
import { appendEvent } from '../gateway/store/timeline.ts';
import {
  type AuditEntry,
  AuditError,
  type Checkpoint,
  entryLeafHash,
  verifierKeyFor,
  verifyCheckpoint,
  verifyConsistency,
  verifyInclusion,
} from '../protocols/audit/index.ts';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const ORIGIN = parseConfig({}).AUDIT_ORIGIN;
let stack: Stack;
let vehicle: SeedVehicle;
let location: SeedLocation;
let deliveryId: string;

const get = async (url: string, auth = true) => {
  const res = await stack.gateway.app.inject({
    method: 'GET',
    url,
    headers: auth ? { authorization: `Bearer ${stack.apiKey}` } : {},
  });
  return { status: res.statusCode, text: res.body, type: res.headers['content-type'] };
};
const getJson = async (url: string) => {
  const r = await get(url);
  return { status: r.status, body: JSON.parse(r.text) };
};
const key = () => verifierKeyFor(ORIGIN, createPublicKey(readFileSync(stack.pki.auditCheckpointPub, 'utf8')));
const checkpoint = async (): Promise<Checkpoint & { note: string }> => {
  const r = await get('/v1/audit/checkpoint');
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain/);
  return { ...verifyCheckpoint(r.text, key()), note: r.text };
};
const allEntries = async (): Promise<AuditEntry[]> =>
  (await getJson('/v1/audit/entries?from=0')).body.entries;

beforeAll(async () => {
  stack = await startStack();
  vehicle = stack.seeds.vehicles.find((v) => v.make === 'Chevrolet' && v.year >= 2015) as SeedVehicle;
  location = stack.seeds.locations.find((l) => l.ownerId === vehicle.ownerId) as SeedLocation;
  const { vin, make, model, year, provider, ownerId } = vehicle;
  expect(
    (
      await stack.request('POST', '/v1/vehicles', {
        vin,
        make,
        model,
        year,
        provider,
        ownerId,
        consent: ['unlock', 'lock'],
      })
    ).status,
  ).toBe(201);
  const loc = await stack.request('POST', '/v1/locations', {
    ownerId,
    label: location.label,
    lat: location.lat,
    lon: location.lon,
    radiusM: 200,
    access: 'public',
  });
  const now = Date.now();
  const d = await stack.request('POST', '/v1/deliveries', {
    vin,
    locationId: loc.body.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  deliveryId = d.body.id;
  // The car confirms it is parked at the location before anything opens (PROTOCOL.md §3.5).
  expect((await stack.request('POST', `/v1/deliveries/${deliveryId}/parking`)).status).toBe(200);
  const at = { lat: location.lat + 0.0003, lon: location.lon };
  const wrong = { driverId: 'driver-9', position: at, packageId: 'pkg-1' };
  expect((await stack.request('POST', `/v1/deliveries/${deliveryId}/unlock`, wrong)).status).toBe(403);
  const right = { driverId: 'driver-7', position: at, packageId: 'pkg-1' };
  expect((await stack.request('POST', `/v1/deliveries/${deliveryId}/unlock`, right)).status).toBe(200);
  expect(
    (await stack.request('POST', `/v1/deliveries/${deliveryId}/lock`, { driverId: 'driver-7' })).status,
  ).toBe(200);
});

afterAll(async () => {
  await stack?.close();
});

describe('what the log holds', () => {
  it("every timeline event of the delivery, in order, and the owner's consent before it", async () => {
    const view = await stack.request('GET', `/v1/deliveries/${deliveryId}`);
    const logged = (await allEntries()).filter(
      (e) => e.deliveryId === deliveryId && e.kind !== 'api_key_used',
    );
    expect(logged.map((e) => [e.kind, e.outcome, e.code])).toEqual(
      view.body.timeline.map((t: { kind: string; outcome: string; code: string | null }) => [
        t.kind,
        t.outcome,
        t.code,
      ]),
    );
    expect(logged.map((e) => e.detail)).toEqual(view.body.timeline.map((t: { detail: unknown }) => t.detail));
    const linked = (await allEntries()).find((e) => e.kind === 'vehicle_linked');
    expect(linked?.detail).toMatchObject({
      vin: vehicle.vin,
      ownerId: vehicle.ownerId,
      consent: ['unlock', 'lock'],
    });
    // Tokens appear as their hash only.
    expect(JSON.stringify(await allEntries())).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
  });

  it('one entry per mutating request with the key and the route, none for reads', async () => {
    const before = (await allEntries()).length;
    await stack.request('GET', `/v1/deliveries/${deliveryId}`);
    expect((await allEntries()).length).toBe(before);
    const uses = (await allEntries()).filter((e) => e.kind === 'api_key_used');
    expect(uses.map((e) => `${e.detail.method} ${e.detail.route}`)).toEqual([
      'POST /v1/vehicles',
      'POST /v1/locations',
      'POST /v1/deliveries',
      'POST /v1/deliveries/:id/parking',
      'POST /v1/deliveries/:id/unlock',
      'POST /v1/deliveries/:id/unlock',
      'POST /v1/deliveries/:id/lock',
    ]);
    expect(new Set(uses.map((e) => e.detail.keyId)).size).toBe(1);
    expect(uses.slice(3).every((e) => e.deliveryId === deliveryId)).toBe(true);
  });

  it("a request that changes nothing still leaves its key's use, written before its reply", async () => {
    const before = (await allEntries()).length;
    const reply = await stack.request('POST', '/v1/deliveries/dlv_missing/lock', { driverId: 'nobody' });
    expect(reply.status).toBe(404);
    const added = (await allEntries()).slice(before);
    expect(added.map((e) => [e.kind, e.deliveryId, e.detail.route])).toEqual([
      ['api_key_used', 'dlv_missing', '/v1/deliveries/:id/lock'],
    ]);
  });

  it('a decision whose audit entry cannot be written is not recorded either (one transaction)', async () => {
    const size = (await allEntries()).length;
    const timeline = (await stack.request('GET', `/v1/deliveries/${deliveryId}`)).body.timeline.length;
    const leak = { token: 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJkbHYifQ.c2lnbmF0dXJlLWJ5dGVz' };
    const write = appendEvent(stack.gateway.store.db, deliveryId, {
      at: Date.now(),
      kind: 'command_sent',
      outcome: 'info',
      code: null,
      detail: leak,
    });
    await expect(write).rejects.toThrow(AuditError);
    await expect(write).rejects.toMatchObject({ code: 'ENTRY_REFUSED' });
    expect((await allEntries()).length).toBe(size);
    expect((await stack.request('GET', `/v1/deliveries/${deliveryId}`)).body.timeline).toHaveLength(timeline);
  });
});

describe('checkpoints and proofs over HTTP', () => {
  it('signs a C2SP checkpoint with the checkpoint key, and again only when the log grew', async () => {
    const first = await checkpoint();
    expect(first.origin).toBe(ORIGIN);
    expect(first.size).toBe((await allEntries()).length);
    expect((await checkpoint()).note).toBe(first.note);
    await stack.request('POST', `/v1/deliveries/${deliveryId}/lock`, { driverId: 'driver-9' });
    expect((await checkpoint()).size).toBe(first.size + 2);
  });

  it('proves inclusion by index and by leaf hash, and consistency between two checkpoints', async () => {
    const older = await checkpoint();
    await stack.request('POST', `/v1/deliveries/${deliveryId}/unlock`, {
      driverId: 'driver-7',
      position: { lat: 0, lon: 0 },
      packageId: 'pkg-1',
    });
    const newer = await checkpoint();
    expect(newer.size).toBeGreaterThan(older.size);
    const entries = await allEntries();
    for (const index of [0, 7, newer.size - 1]) {
      const leaf = entryLeafHash(entries[index] as AuditEntry);
      const byIndex = await getJson(`/v1/audit/proof?index=${index}`);
      expect(byIndex.body).toMatchObject({
        type: 'inclusion',
        index,
        treeSize: newer.size,
        leafHash: leaf.toString('base64'),
      });
      const proof = byIndex.body.proof.map((h: string) => Buffer.from(h, 'base64'));
      expect(verifyInclusion(leaf, index, newer.size, proof, newer.root)).toBe(true);
      const byHash = await getJson(
        `/v1/audit/proof?leafHash=${leaf.toString('base64url')}&treeSize=${newer.size}`,
      );
      expect(byHash.body.index).toBe(index);
    }
    const c = await getJson(`/v1/audit/proof?from=${older.size}&to=${newer.size}`);
    expect(c.body).toMatchObject({ type: 'consistency', from: older.size, to: newer.size });
    const proof = c.body.proof.map((h: string) => Buffer.from(h, 'base64'));
    expect(verifyConsistency(older.size, newer.size, older.root, newer.root, proof)).toBe(true);
    expect(verifyConsistency(older.size, newer.size, newer.root, newer.root, proof)).toBe(false);
  });

  it('pages entries and refuses ranges outside the log', async () => {
    const page = await getJson('/v1/audit/entries?from=2&to=5');
    expect(page.body).toMatchObject({ origin: ORIGIN, from: 2, to: 5 });
    expect(page.body.entries.map((e: AuditEntry) => e.index)).toEqual([2, 3, 4]);
    const problems: Array<[string, number, string]> = [
      ['/v1/audit/entries?from=100000', 400, 'AUDIT_RANGE_INVALID'],
      ['/v1/audit/proof?index=100000', 400, 'AUDIT_RANGE_INVALID'],
      ['/v1/audit/proof?from=100000', 400, 'AUDIT_RANGE_INVALID'],
      ['/v1/audit/proof?index=1&from=0', 400, 'VALIDATION_FAILED'],
      ['/v1/audit/proof', 400, 'VALIDATION_FAILED'],
      [`/v1/audit/proof?leafHash=${Buffer.alloc(32).toString('base64url')}`, 404, 'NOT_FOUND'],
    ];
    for (const [url, status, code] of problems) {
      const r = await getJson(url);
      expect([url, r.status, r.body.code]).toEqual([url, status, code]);
    }
  });

  it('needs the API key on every audit route', async () => {
    for (const url of ['/v1/audit/checkpoint', '/v1/audit/entries', '/v1/audit/proof?index=0']) {
      const r = await get(url, false);
      expect(r.status).toBe(401);
      expect(JSON.parse(r.text).code).toBe('UNAUTHENTICATED');
    }
  });
});

describe('export and offline verification', () => {
  it("exports the real delivery from the gateway's store and verifies it with the public key file alone", async () => {
    const held = (await checkpoint()).note;
    const databaseUrl = stack.databaseUrl ?? undefined;
    const files = { bundle: join(stack.dir, 'bundle.json'), held: join(stack.dir, 'held.txt') };
    writeFileSync(files.held, held);
    const out: string[] = [];
    const err: string[] = [];
    const io: AuditCliIo = {
      stdout: (t) => out.push(t),
      stderr: (t) => err.push(t),
      readFile: (p) => readFileSync(p, 'utf8'),
      writeFile: (p, t) => writeFileSync(p, t),
      // The store the gateway wrote: its SQLite file in DATA_DIR, or its PostgreSQL schema (DATABASE_URL).
      exportBundle: (dirs) => exportFromStore({ ...dirs, databaseUrl, origin: ORIGIN, now: Date.now }),
      defaults: { dataDir: join(stack.dir, 'data'), certsDir: stack.pki.dir },
    };
    expect(await runAuditCli(['export', files.bundle], io)).toBe(0);
    const verifyArgs = [
      'verify',
      files.bundle,
      '--key',
      stack.pki.auditCheckpointPub,
      '--checkpoint',
      files.held,
    ];
    expect(await runAuditCli(verifyArgs, io)).toBe(0);
    expect(err.join('')).toBe('');
    const text = out.join('');
    expect(text).toContain(`Audit log ${ORIGIN}: VERIFIED`);
    expect(text).toContain(`Delivery ${deliveryId}`);
    expect(text).toMatch(/unlock AUTHORIZED for driver driver-7 with package pkg-1/);
    expect(text).toMatch(/relock: unlock #\d+ was followed by a car-confirmed lock, #\d+/);
    expect(text).toMatch(/lock by driver driver-9 REFUSED: DRIVER_NOT_ASSIGNED/);
  });
});

// Idempotency-Key on every POST (IETF httpapi draft): replay, reuse with another body, in flight, retention.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresAdapter, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canonicalJson,
  claimIdempotencyKey,
  completeIdempotencyKey,
  DEFAULT_IDEMPOTENCY_POLICY,
  fingerprintOf,
  purgeIdempotencyKeys,
} from '../gateway/http/idempotency-records.ts';
import type { Store } from '../gateway/store/store.ts';
import { commandTopic } from '../protocols/index.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import {
  type Call,
  callerWith,
  callWithKey,
  deliveryBody,
  link,
  locationAt,
  unlockBody,
  vehicleOf,
} from './helpers/platform.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

let stack: Stack;
let admin: Call;
let v: SeedVehicle;
let loc: string;

beforeAll(async () => {
  stack = await startStack({ COMMAND_TIMEOUT_MS: '1200' });
  admin = callWithKey(stack, stack.apiKey);
  v = vehicleOf(stack, 'owner-ada');
  await link(admin, v);
  loc = await locationAt(admin, v);
});

afterAll(async () => {
  await stack?.close();
});

const countDeliveries = async (): Promise<number> =>
  Number(
    (
      await stack.gateway.store.db
        .selectFrom('deliveries')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

describe('Idempotency-Key over HTTP', () => {
  it('replays the same response for the same key and body, with a single effect', async () => {
    const body = deliveryBody(v, loc);
    const before = await countDeliveries();
    const first = await admin('POST', '/v1/deliveries', body, { 'idempotency-key': 'order-1001' });
    expect(first.status).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    // Keys in another order are the same body.
    const reordered = Object.fromEntries(Object.entries(body).reverse());
    const again = await admin('POST', '/v1/deliveries', reordered, { 'idempotency-key': 'order-1001' });
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.headers['content-type']).toBe(first.headers['content-type']);
    expect(await countDeliveries()).toBe(before + 1);
    // The sf-string form of the header is the same key.
    const quoted = await admin('POST', '/v1/deliveries', body, { 'idempotency-key': '"order-1001"' });
    expect(quoted.body.id).toBe(first.body.id);
  });

  it('answers 422 IDEMPOTENCY_KEY_REUSED for the same key with another body or route', async () => {
    const body = deliveryBody(v, loc);
    expect((await admin('POST', '/v1/deliveries', body, { 'idempotency-key': 'order-1002' })).status).toBe(
      201,
    );
    const before = await countDeliveries();
    const changed = await admin(
      'POST',
      '/v1/deliveries',
      { ...body, driverId: 'driver-8' },
      {
        'idempotency-key': 'order-1002',
      },
    );
    expect(changed.status).toBe(422);
    expect(changed.body).toMatchObject({
      code: 'IDEMPOTENCY_KEY_REUSED',
      retryable: false,
      resolution: 'FIX_REQUEST',
    });
    const otherRoute = await admin(
      'POST',
      '/v1/locations',
      { ownerId: v.ownerId, label: 'x', lat: 1, lon: 1 },
      {
        'idempotency-key': 'order-1002',
      },
    );
    expect(otherRoute.status).toBe(422);
    expect(await countDeliveries()).toBe(before);
  });

  it('scopes keys per API key: another key with the same Idempotency-Key is another request', async () => {
    const other = await callerWith(stack, ['admin']);
    const body = deliveryBody(v, loc);
    const a = await admin('POST', '/v1/deliveries', body, { 'idempotency-key': 'shared-key' });
    const b = await other('POST', '/v1/deliveries', body, { 'idempotency-key': 'shared-key' });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(a.body.id).not.toBe(b.body.id);
  });

  it('replays a final refusal too, and runs requests without a key every time', async () => {
    const bad = deliveryBody(v, 'loc_missing');
    const first = await admin('POST', '/v1/deliveries', bad, { 'idempotency-key': 'refused-1' });
    expect(first.status).toBe(404);
    const again = await admin('POST', '/v1/deliveries', bad, { 'idempotency-key': 'refused-1' });
    expect(again.status).toBe(404);
    expect(again.body.requestId).toBe(first.body.requestId);
    expect(again.headers['idempotent-replayed']).toBe('true');
    const before = await countDeliveries();
    const body = deliveryBody(v, loc);
    await admin('POST', '/v1/deliveries', body);
    await admin('POST', '/v1/deliveries', body);
    expect(await countDeliveries()).toBe(before + 2);
  });

  it('refuses malformed keys with 400 IDEMPOTENCY_KEY_INVALID', async () => {
    for (const key of ['', 'x'.repeat(256), 'has space', 'quote"inside', 'ü']) {
      const r = await admin('POST', '/v1/deliveries', deliveryBody(v, loc), { 'idempotency-key': key });
      expect(r.status, JSON.stringify(key)).toBe(400);
      expect(r.body.code).toBe('IDEMPOTENCY_KEY_INVALID');
    }
  });

  it('answers 409 IDEMPOTENCY_IN_FLIGHT to a duplicate while the first runs, then frees a retryable failure', async () => {
    const offline = vehicleOf(stack, 'owner-ada', 1);
    await link(admin, offline);
    const offLoc = await locationAt(admin, offline);
    const d = await admin('POST', '/v1/deliveries', deliveryBody(offline, offLoc));
    expect((await admin('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
    // The car drops off the network: the unlock waits for an ack until COMMAND_TIMEOUT_MS.
    await stack.fleet.car(offline.vin).connection.close();
    const headers = { 'idempotency-key': 'unlock-attempt-1' };
    const body = unlockBody(offline);
    const slow = admin('POST', `/v1/deliveries/${d.body.id}/unlock`, body, headers);
    // Wait until the first request holds the key, however slow the machine: its grant and command row are
    // committed (the unit marked the key with them) and it waits for the car's ack.
    await expect
      .poll(
        async () =>
          (
            await stack.gateway.store.db
              .selectFrom('idempotency_keys')
              .select('status')
              .where('idem_key', '=', 'unlock-attempt-1')
              .executeTakeFirst()
          )?.status,
        { timeout: 5_000, interval: 10 },
      )
      .toBe('committed');
    const duplicate = await admin('POST', `/v1/deliveries/${d.body.id}/unlock`, body, headers);
    expect(duplicate.status).toBe(409);
    expect(duplicate.body).toMatchObject({
      code: 'IDEMPOTENCY_IN_FLIGHT',
      retryable: true,
      resolution: 'RETRY_LATER',
      mayHaveSucceeded: true,
    });
    const first = await slow;
    expect(first.status).toBe(504);
    expect(first.body).toMatchObject({
      code: 'VEHICLE_UNREACHABLE',
      retryable: true,
      mayHaveSucceeded: true,
    });
    // One unlock reached the broker (the parking query before it carries no token).
    const withToken = (p: { topic: string; payload: Buffer | string }) =>
      p.topic === commandTopic(offline.vin) && /eyJ[A-Za-z0-9_-]+\.eyJ/.test(p.payload.toString());
    expect(stack.published.filter(withToken)).toHaveLength(1);
    // 504 is retryable, so it was not stored: the retry with the same key runs again. The earlier unlock is
    // unsettled and its car is away, so the retry sends nothing (PROTOCOL.md §6.3).
    const retry = await admin('POST', `/v1/deliveries/${d.body.id}/unlock`, body, headers);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    expect(retry.body).toMatchObject({ code: 'VEHICLE_UNREACHABLE', mayHaveSucceeded: true });
    expect(stack.published.filter(withToken)).toHaveLength(1);
  });
});

describe('Idempotency-Key across a crash', () => {
  /** Makes storing a response fail, as a crash right after the effect committed would leave the key. */
  async function refuseStoredResponses(on: boolean): Promise<void> {
    const db = stack.gateway.store.db;
    const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
    if (postgres && on) {
      await sql`create or replace function refuse_done() returns trigger as $$ begin if new.status = 'done' then raise exception 'crash'; end if; return new; end $$ language plpgsql`.execute(
        db,
      );
      await sql`create trigger crash_before_done before update on idempotency_keys for each row execute function refuse_done()`.execute(
        db,
      );
    } else if (postgres) {
      await sql`drop trigger crash_before_done on idempotency_keys`.execute(db);
    } else if (on) {
      await sql`create trigger crash_before_done before update on idempotency_keys when new.status = 'done' begin select raise(abort, 'crash'); end`.execute(
        db,
      );
    } else {
      await sql`drop trigger crash_before_done`.execute(db);
    }
  }

  it("never runs the effect twice: the key is marked in the effect's own transaction", async () => {
    const body = deliveryBody(v, loc);
    const before = await countDeliveries();
    await refuseStoredResponses(true);
    try {
      // The delivery is written; storing its response fails, as if the gateway had died right then.
      const first = await admin('POST', '/v1/deliveries', body, { 'idempotency-key': 'order-crash' });
      expect(first.status).toBe(500);
    } finally {
      await refuseStoredResponses(false);
    }
    expect(await countDeliveries()).toBe(before + 1);
    const row = await stack.gateway.store.db
      .selectFrom('idempotency_keys')
      .select(['status', 'created_at'])
      .where('idem_key', '=', 'order-crash')
      .executeTakeFirstOrThrow();
    expect(row.status).toBe('committed');
    // Past the in-flight lease (the request is gone): the retry would run again were the key not marked.
    await stack.gateway.store.db
      .updateTable('idempotency_keys')
      .set({ created_at: Number(row.created_at) - DEFAULT_IDEMPOTENCY_POLICY.inFlightMs - 1 })
      .where('idem_key', '=', 'order-crash')
      .execute();
    const retry = await admin('POST', '/v1/deliveries', body, { 'idempotency-key': 'order-crash' });
    expect(retry.status).toBe(409);
    expect(retry.body).toMatchObject({
      code: 'IDEMPOTENCY_RESPONSE_LOST',
      retryable: false,
      mayHaveSucceeded: true,
    });
    expect(await countDeliveries()).toBe(before + 1);
  });
});

describe("the owner's controls", () => {
  /** Makes writing any API key's use fail (a full disk, say), so that a request cannot log its key's use. */
  async function refuseKeyUse(on: boolean): Promise<void> {
    const db = stack.gateway.store.db;
    const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
    if (postgres && on) {
      await sql`create or replace function refuse_key_use() returns trigger as $$ begin if new.kind = 'api_key_used' then raise exception 'disk full'; end if; return new; end $$ language plpgsql`.execute(
        db,
      );
      await sql`create trigger no_key_use before insert on audit_entries for each row execute function refuse_key_use()`.execute(
        db,
      );
    } else if (postgres) {
      await sql`drop trigger no_key_use on audit_entries`.execute(db);
    } else if (on) {
      await sql`create trigger no_key_use before insert on audit_entries when new.kind = 'api_key_used' begin select raise(abort, 'disk full'); end`.execute(
        db,
      );
    } else {
      await sql`drop trigger no_key_use`.execute(db);
    }
  }

  it.each([
    ['block', 'access_blocked'],
    ['cancel', 'delivery_cancelled'],
  ])("%s commits in one unit with the request's key use, or not at all", async (action, kind) => {
    const d = await admin('POST', '/v1/deliveries', deliveryBody(v, loc));
    expect(d.status).toBe(201);
    const id = d.body.id as string;
    await refuseKeyUse(true);
    try {
      const refused = await admin(
        'POST',
        `/v1/deliveries/${id}/${action}`,
        { reason: 'test' },
        { 'idempotency-key': `control-${action}` },
      );
      expect(refused.status).toBe(500);
    } finally {
      await refuseKeyUse(false);
    }
    const db = stack.gateway.store.db;
    const row = await db
      .selectFrom('deliveries')
      .select(['blocked', 'status'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    expect({ blocked: Number(row.blocked), status: row.status }).toEqual({ blocked: 0, status: 'scheduled' });
    const logged = await db
      .selectFrom('audit_entries')
      .select('kind')
      .where('delivery_id', '=', id)
      .execute();
    expect(logged.map((e) => e.kind)).not.toContain(kind);
  });
});

describe('idempotency records in the store', () => {
  let dir: string;
  let store: Store;
  const policy = DEFAULT_IDEMPOTENCY_POLICY;
  const T0 = Date.parse('2026-03-01T12:00:00Z');
  const fp = fingerprintOf('POST', '/v1/deliveries', { a: 1 });

  let scratch: ScratchStore;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'curbside-idem-'));
    scratch = await scratchStore(dir);
    store = await scratch.open();
  });
  afterAll(async () => {
    await store?.close();
    await scratch?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a key for 24 h, then frees it and purges the row', async () => {
    expect(policy.retentionMs).toBe(24 * 3_600_000);
    const k = { apiKeyId: 'key_a', key: 'k1', fingerprint: fp, now: T0 };
    expect(await claimIdempotencyKey(store.db, k, policy)).toEqual({ kind: 'claimed' });
    await completeIdempotencyKey(store.db, {
      apiKeyId: 'key_a',
      key: 'k1',
      status: 201,
      contentType: 'application/json',
      body: '{"id":1}',
    });
    const late = T0 + policy.retentionMs - 1;
    expect(await claimIdempotencyKey(store.db, { ...k, now: late }, policy)).toMatchObject({
      kind: 'replay',
      status: 201,
    });
    const other = fingerprintOf('POST', '/v1/deliveries', { a: 2 });
    expect(await claimIdempotencyKey(store.db, { ...k, fingerprint: other, now: late }, policy)).toEqual({
      kind: 'reused',
    });
    expect(await purgeIdempotencyKeys(store.db, late)).toBe(0);
    expect(await purgeIdempotencyKeys(store.db, T0 + policy.retentionMs)).toBe(1);
    expect(
      await claimIdempotencyKey(store.db, { ...k, fingerprint: other, now: T0 + policy.retentionMs }, policy),
    ).toEqual({
      kind: 'claimed',
    });
  });

  it('frees an expired key on use even before the purge runs', async () => {
    const k = { apiKeyId: 'key_a', key: 'k2', fingerprint: fp, now: T0 };
    await claimIdempotencyKey(store.db, k, policy);
    await completeIdempotencyKey(store.db, {
      apiKeyId: 'key_a',
      key: 'k2',
      status: 201,
      contentType: 'application/json',
      body: '{}',
    });
    const other = fingerprintOf('POST', '/v1/x', {});
    expect(
      await claimIdempotencyKey(store.db, { ...k, fingerprint: other, now: T0 + policy.retentionMs }, policy),
    ).toEqual({
      kind: 'claimed',
    });
  });

  it('takes over a key left in flight by a replica that died, only after the in-flight limit', async () => {
    const k = { apiKeyId: 'key_b', key: 'k3', fingerprint: fp, now: T0 };
    expect(await claimIdempotencyKey(store.db, k, policy)).toEqual({ kind: 'claimed' });
    expect(await claimIdempotencyKey(store.db, { ...k, now: T0 + policy.inFlightMs - 1 }, policy)).toEqual({
      kind: 'in_flight',
    });
    expect(await claimIdempotencyKey(store.db, { ...k, now: T0 + policy.inFlightMs }, policy)).toEqual({
      kind: 'claimed',
    });
  });

  it('fingerprints canonical JSON: key order does not matter, values do', () => {
    expect(canonicalJson({ b: [1, { y: 1, x: 2 }], a: null })).toBe('{"a":null,"b":[1,{"x":2,"y":1}]}');
    expect(fingerprintOf('POST', '/a', { x: 1, y: 2 })).toBe(fingerprintOf('POST', '/a', { y: 2, x: 1 }));
    expect(fingerprintOf('POST', '/a', { x: 1 })).not.toBe(fingerprintOf('POST', '/b', { x: 1 }));
    expect(fingerprintOf('POST', '/a', { x: 1 })).not.toBe(fingerprintOf('POST', '/a', { x: '1' }));
  });
});

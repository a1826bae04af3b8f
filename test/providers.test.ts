// Unit tests of the provider adapters: lossless translation, distinct dialects, refusals with stable codes, vectors.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Ack,
  CatalogSchema,
  type Command,
  MAX_PAYLOAD_BYTES,
  onstar,
  PROVIDERS,
  type ProviderAdapter,
  ProviderError,
  providerAdapter,
  recoverIdsAnyDialect,
  type StateMessage,
  type StateQuery,
  type StateReport,
  volvoOnCall,
} from '../protocols/index.ts';

const VIN = '1G1ZE5ST5KF100231';
const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJkbHZfMSJ9.c2lnbmF0dXJl';
const AT = Date.parse('2026-06-01T12:00:00.123Z');

const unlock: Command = {
  v: 1,
  type: 'command',
  commandId: 'cmd_1',
  deliveryId: 'dlv_1',
  action: 'unlock',
  token: TOKEN,
};
const lock: Command = { ...unlock, commandId: 'cmd_2', action: 'lock' };
const query: StateQuery = { v: 1, type: 'state_query', nonce: 'n0nce-n0nce-n0nce-n0nce' };
const executed: Ack = {
  v: 1,
  type: 'ack',
  vin: VIN,
  commandId: 'cmd_1',
  deliveryId: 'dlv_1',
  action: 'unlock',
  outcome: 'executed',
  locked: false,
  at: AT,
  // The car's detached JWS (TOKEN.md §9): not a member any dialect maps, so it rides in the extension field.
  sig: 'eyJhbGciOiJFUzI1NiJ9..c2lnbmF0dXJl',
};
const refused: Ack = {
  v: 1,
  type: 'ack',
  vin: VIN,
  commandId: 'cmd_3',
  action: 'RES',
  outcome: 'refused',
  reason: 'ACTION_NOT_ALLOWED',
  locked: true,
  sig: 'eyJhbGciOiJFUzI1NiJ9..cmVmdXNlZA',
  at: null,
};
const report: StateReport = {
  v: 1,
  type: 'state',
  vin: VIN,
  seq: 12,
  online: true,
  locked: false,
  doors: { driver: 'open', passenger: 'closed', rearLeft: 'closed', rearRight: 'open' },
  trunk: 'open',
  ignition: 'on',
  position: { lat: 47.6117, lon: -122.3379 },
  at: AT,
  nonce: query.nonce,
};
const presence: StateMessage = { v: 1, type: 'presence', vin: VIN, online: false };

const ADAPTERS: ProviderAdapter[] = [onstar, volvoOnCall];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProviderError) return err.code;
    throw err;
  }
  return undefined;
}

describe.each(ADAPTERS)('$name adapter', (adapter) => {
  it('translates every canonical message there and back unchanged', () => {
    for (const m of [unlock, lock, query]) expect(adapter.decodeToCar(adapter.encodeToCar(m))).toEqual(m);
    for (const a of [executed, refused]) expect(adapter.decodeAck(adapter.encodeAck(a))).toEqual(a);
    const { nonce: _, ...periodic } = report;
    for (const s of [report, periodic, presence])
      expect(adapter.decodeState(adapter.encodeState(s))).toEqual(s);
  });

  it('carries the signed token byte for byte, under its own member name', () => {
    const wire = JSON.parse(adapter.encodeToCar(unlock));
    expect(JSON.stringify(wire)).toContain(`"${TOKEN}"`);
    expect(wire).not.toHaveProperty('token');
    expect(wire).not.toHaveProperty('commandId');
  });

  it('refuses the canonical form and the other dialect with DIALECT_MISMATCH', () => {
    const other = ADAPTERS.find((a) => a !== adapter) as ProviderAdapter;
    expect(codeOf(() => adapter.decodeToCar(JSON.stringify(unlock)))).toBe('DIALECT_MISMATCH');
    expect(codeOf(() => adapter.decodeToCar(other.encodeToCar(unlock)))).toBe('DIALECT_MISMATCH');
    expect(codeOf(() => adapter.decodeAck(other.encodeAck(executed)))).toBe('DIALECT_MISMATCH');
    expect(codeOf(() => adapter.decodeState(other.encodeState(report)))).toBe('DIALECT_MISMATCH');
    expect(codeOf(() => adapter.decodeAck('[1,2]'))).toBe('DIALECT_MISMATCH');
  });

  it('refuses oversized, non-JSON and duplicate-member payloads before reading them', () => {
    expect(codeOf(() => adapter.decodeAck(Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20)))).toBe(
      'MESSAGE_TOO_LARGE',
    );
    expect(codeOf(() => adapter.decodeAck('{"a":'))).toBe('MESSAGE_NOT_JSON');
    const wire = adapter.encodeAck(executed);
    const duplicated = `${wire.slice(0, -1)},${wire.slice(1)}`;
    expect(codeOf(() => adapter.decodeAck(duplicated))).toBe('MESSAGE_NOT_JSON');
  });

  it('carries canonical members it does not map (a car signature) losslessly in its extension field', () => {
    const signed = { ...executed, sig: 'eyJhbGciOiJFUzI1NiJ9..b3RoZXI' };
    const wire = adapter.codecs.ack.toWire(signed);
    expect(adapter.codecs.ack.fromWire(adapter.codecs.ack.wire.parse(wire))).toEqual(signed);
    const state = { ...report, sig: 'c2lnbmVk' };
    const stateWire = adapter.codecs.state.toWire(state);
    expect(adapter.codecs.state.fromWire(adapter.codecs.state.wire.parse(stateWire))).toEqual(state);
  });

  it('leaves the canonical schema the judge of extension members, and refuses one that shadows a mapped member', () => {
    const wire = JSON.parse(adapter.encodeAck(executed));
    const extKey = adapter === onstar ? 'ext' : 'extensions';
    const target = adapter === onstar ? wire.commandResponse : wire;
    target[extKey] = { notInTheSchema: 1 };
    expect(codeOf(() => adapter.decodeAck(JSON.stringify(wire)))).toBe('MESSAGE_INVALID');
    target[extKey] = { locked: true };
    expect(codeOf(() => adapter.decodeAck(JSON.stringify(wire)))).toBe('MESSAGE_INVALID');
  });

  it('refuses a command it can name but not execute, keeping its ids for the ack', () => {
    const wire = JSON.parse(adapter.encodeToCar(unlock));
    if (adapter === onstar) wire.commandRequest.authorization = undefined;
    else wire.access_token = undefined;
    let caught: unknown;
    try {
      adapter.decodeToCar(JSON.stringify(wire));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ProviderError);
    expect(caught).toMatchObject({
      code: 'MESSAGE_INVALID',
      ids: { commandId: 'cmd_1', deliveryId: 'dlv_1', action: 'unlock' },
    });
  });

  it('property: any ack and state report round-trips, extension members included', () => {
    const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
    const extra = fc.option(fc.record({ sig: fc.string({ maxLength: 40 }) }), { nil: undefined });
    fc.assert(
      fc.property(
        id,
        fc.option(id, { nil: undefined }),
        fc.constantFrom('unlock', 'lock', 'HBL', 'unknown'),
        fc.boolean(),
        fc.option(fc.integer({ min: 0, max: 253_402_300_799_999 }), { nil: null }),
        extra,
        (commandId, deliveryId, action, locked, at, ext) => {
          const ack = {
            ...executed,
            commandId,
            ...(deliveryId === undefined ? { deliveryId: undefined } : { deliveryId }),
            action,
            locked,
            at,
            ...ext,
          };
          const canonical = Object.fromEntries(Object.entries(ack).filter(([, v]) => v !== undefined));
          const back = adapter.codecs.ack.fromWire(
            adapter.codecs.ack.wire.parse(adapter.codecs.ack.toWire(ack)),
          );
          expect(back).toEqual(canonical);
        },
      ),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 40 }),
        // JSON itself has no -0 (it prints 0), canonical or dialect alike.
        fc.double({ min: -90, max: 90, noNaN: true }).map((x) => x + 0),
        fc.double({ min: -180, max: 180, noNaN: true }).map((x) => x + 0),
        fc.boolean(),
        fc.constantFrom('on', 'off') as fc.Arbitrary<'on' | 'off'>,
        (seq, lat, lon, locked, ignition) => {
          const s: StateReport = { ...report, seq, position: { lat, lon }, locked, ignition };
          expect(adapter.decodeState(adapter.encodeState(s))).toEqual(s);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('the two dialects', () => {
  it('differ in field names, command names and ack shapes', () => {
    const os = JSON.parse(onstar.encodeToCar(unlock));
    const voc = JSON.parse(volvoOnCall.encodeToCar(unlock));
    expect(os).toEqual({
      onstar: '1.0',
      commandRequest: { requestId: 'cmd_1', type: 'unlockDoor', orderId: 'dlv_1', authorization: TOKEN },
    });
    expect(voc).toEqual({
      voc_api: 2,
      service: 'RDU',
      service_id: 'cmd_1',
      assignment: 'dlv_1',
      access_token: TOKEN,
    });
    expect(JSON.parse(onstar.encodeAck(executed)).commandResponse).toMatchObject({
      status: 'success',
      doorsLocked: false,
      completionTime: AT,
    });
    expect(JSON.parse(volvoOnCall.encodeAck(executed))).toMatchObject({
      status: 'Successful',
      car_locked: false,
      status_timestamp: '2026-06-01T12:00:00.123Z',
    });
  });

  it('refuse a request for any action outside unlock and lock with ACTION_NOT_ALLOWED, naming it', () => {
    const remoteStart = JSON.stringify({
      onstar: '1.0',
      commandRequest: { requestId: 'cmd_9', type: 'start', orderId: 'dlv_1', authorization: TOKEN },
    });
    const honk = JSON.stringify({ voc_api: 2, service: 'HBL', service_id: 'cmd_9', access_token: TOKEN });
    for (const [adapter, payload, action] of [
      [onstar, remoteStart, 'start'],
      [volvoOnCall, honk, 'HBL'],
    ] as const) {
      let caught: unknown;
      try {
        adapter.decodeToCar(payload);
      } catch (err) {
        caught = err;
      }
      expect(caught).toMatchObject({ code: 'ACTION_NOT_ALLOWED', ids: { commandId: 'cmd_9', action } });
    }
  });

  it('name a foreign command through the registry, so the car can address its refusal', () => {
    expect(recoverIdsAnyDialect(JSON.parse(volvoOnCall.encodeToCar(lock)))).toEqual({
      commandId: 'cmd_2',
      deliveryId: 'dlv_1',
      action: 'lock',
    });
    expect(recoverIdsAnyDialect(JSON.parse(JSON.stringify(unlock)))).toBeNull();
  });
});

describe('registry', () => {
  it('has an adapter for every provider in the catalog and refuses any other id', () => {
    const catalog = CatalogSchema.parse(JSON.parse(readFileSync('seeds/catalog.json', 'utf8')));
    for (const p of catalog.providers) expect(providerAdapter(p.id).id).toBe(p.id);
    expect(codeOf(() => providerAdapter('fordpass'))).toBe('PROVIDER_UNKNOWN');
    expect(codeOf(() => providerAdapter('__proto__'))).toBe('PROVIDER_UNKNOWN');
    expect(Object.keys(PROVIDERS).sort()).toEqual(catalog.providers.map((p) => p.id).sort());
  });
});

describe('test vectors (protocols/vectors/dialects.json)', () => {
  const vectors = JSON.parse(readFileSync('protocols/vectors/dialects.json', 'utf8')) as {
    canonical: Record<string, Record<string, unknown>>;
    wire: Record<string, Record<string, { direction: 'toCar' | 'ack' | 'state'; json: unknown }>>;
  };
  it.each(Object.keys(vectors.wire))('%s: encodes and decodes every vector exactly', (id) => {
    const adapter = providerAdapter(id);
    for (const [name, v] of Object.entries(vectors.wire[id] ?? {})) {
      const canonical = vectors.canonical[name];
      const text = JSON.stringify(v.json);
      if (v.direction === 'toCar') {
        expect(JSON.parse(adapter.encodeToCar(canonical as Command))).toEqual(v.json);
        expect(adapter.decodeToCar(text)).toEqual(canonical);
      } else if (v.direction === 'ack') {
        expect(JSON.parse(adapter.encodeAck(canonical as Ack))).toEqual(v.json);
        expect(adapter.decodeAck(text)).toEqual(canonical);
      } else {
        expect(JSON.parse(adapter.encodeState(canonical as StateMessage))).toEqual(v.json);
        expect(adapter.decodeState(text)).toEqual(canonical);
      }
    }
  });
});

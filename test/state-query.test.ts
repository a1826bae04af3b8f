// Tests the state query's wire shapes (PROTOCOL.md §3.5) and the car's memories behind its answers.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Ack, StateQuerySchema, StateReportSchema } from '../protocols/messages.ts';
import { onstar, ProviderError, volvoOnCall } from '../protocols/providers/index.ts';
import { initialCarState } from '../simulator/car-state.ts';
import { createFileCarStore } from '../simulator/car-store.ts';
import { createOutcomeMemory } from '../simulator/outcome-memory.ts';

const VIN = '1G1ZE5ST5KF100231';
const NONCE = 'AAAAAAAAAAAAAAAAAAAAAA';

const ack = (commandId: string, outcome: Ack['outcome'] = 'executed', reason?: string): Ack => ({
  v: 1,
  type: 'ack',
  vin: VIN,
  commandId,
  action: 'unlock',
  outcome,
  ...(reason ? { reason } : {}),
  locked: outcome !== 'executed',
  at: 1,
  // The outcome memory keeps what the ack said; it does not verify the signature.
  sig: 'eyJhbGciOiJFUzI1NiJ9..c2ln',
});

describe('state_query on the wire', () => {
  it('parses the examples of PROTOCOL.md §3.5', () => {
    expect(StateQuerySchema.parse({ v: 1, type: 'state_query', nonce: NONCE })).toBeTruthy();
    expect(
      StateQuerySchema.parse({ v: 1, type: 'state_query', nonce: NONCE, commandIds: ['cmd_1'] }),
    ).toBeTruthy();
    const answer = StateReportSchema.parse({
      v: 1,
      type: 'state',
      vin: VIN,
      seq: 3,
      online: true,
      locked: false,
      doors: { driver: 'closed', passenger: 'closed', rearLeft: 'closed', rearRight: 'closed' },
      trunk: 'closed',
      ignition: 'off',
      position: { lat: 47.6, lon: -122.3 },
      at: 1,
      nonce: NONCE,
      commands: [
        { commandId: 'cmd_1', outcome: 'executed' },
        { commandId: 'cmd_2', outcome: 'refused', reason: 'LOW_BATTERY' },
      ],
    });
    expect(answer.commands).toHaveLength(2);
  });

  it.each([
    ['a short nonce', { nonce: 'abc' }],
    ['a nonce with other characters', { nonce: `${NONCE.slice(1)}/` }],
    ['more than 16 command ids', { commandIds: Array.from({ length: 17 }, (_, i) => `cmd_${i}`) }],
    ['a member it does not have', { token: 'x' }],
  ])('refuses %s', (_name, over) => {
    expect(StateQuerySchema.safeParse({ v: 1, type: 'state_query', nonce: NONCE, ...over }).success).toBe(
      false,
    );
  });

  it('the car reads a query, with its command ids, only in its own dialect', () => {
    const query = { v: 1 as const, type: 'state_query' as const, nonce: NONCE, commandIds: ['cmd_1'] };
    for (const dialect of [onstar, volvoOnCall]) {
      expect(dialect.decodeToCar(dialect.encodeToCar(query))).toEqual(query);
    }
    const codeOf = (payload: string): string | undefined => {
      try {
        onstar.decodeToCar(payload);
        return undefined;
      } catch (err) {
        return err instanceof ProviderError ? err.code : 'OTHER';
      }
    };
    // The canonical form, another provider's dialect, a broken nonce: none is a query to an OnStar car.
    expect(codeOf(JSON.stringify(query))).toBe('DIALECT_MISMATCH');
    expect(codeOf(volvoOnCall.encodeToCar(query))).toBe('DIALECT_MISMATCH');
    expect(codeOf(onstar.encodeToCar(query).replace(NONCE, 'x'))).toBe('MESSAGE_INVALID');
    expect(codeOf('{"onstar":"1.0","commandRequest"')).toBe('MESSAGE_NOT_JSON');
  });
});

describe('the car memories behind a reboot', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'car-memory-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('command outcomes: the first one kept, the oldest forgotten at capacity, all of it across a reboot', () => {
    const file = join(dir, 'o.json');
    const memory = createOutcomeMemory({ file, capacity: 2 });
    memory.record(ack('cmd_1'));
    memory.record(ack('cmd_1', 'refused', 'TOKEN_REPLAYED'));
    memory.record(ack('cmd_2', 'refused', 'LOW_BATTERY'));
    expect(memory.lookup(['cmd_2', 'cmd_1', 'cmd_9'])).toEqual([
      { commandId: 'cmd_2', outcome: 'refused', reason: 'LOW_BATTERY' },
      { commandId: 'cmd_1', outcome: 'executed' },
    ]);
    memory.record(ack('cmd_3'));
    const rebooted = createOutcomeMemory({ file, capacity: 2 });
    expect(rebooted.lookup(['cmd_1', 'cmd_2', 'cmd_3']).map((o) => o.commandId)).toEqual(['cmd_2', 'cmd_3']);
  });

  it('answering a query disowns the commands it could not report, across a reboot; known ones keep their outcome', () => {
    const file = join(dir, 'o.json');
    const memory = createOutcomeMemory({ file });
    memory.record(ack('cmd_1'));
    expect(memory.answer(['cmd_1', 'cmd_2'])).toEqual([{ commandId: 'cmd_1', outcome: 'executed' }]);
    expect(memory.disowned('cmd_1')).toBe(false);
    expect(memory.disowned('cmd_2')).toBe(true);
    expect(memory.disowned('cmd_3')).toBe(false);
    // A later ack for the disowned id (the car's refusal) does not replace it.
    memory.record(ack('cmd_2', 'executed'));
    const rebooted = createOutcomeMemory({ file });
    expect(rebooted.disowned('cmd_2')).toBe(true);
    expect(rebooted.lookup(['cmd_2'])).toEqual([
      { commandId: 'cmd_2', outcome: 'refused', reason: 'COMMAND_DISOWNED' },
    ]);
  });

  it('car state: an unlocked car is still unlocked after a reboot, with its deadline; seq never goes back', () => {
    const file = join(dir, 's.json');
    const store = createFileCarStore(file);
    expect(store.load(5)).toBeNull();
    const state = {
      ...initialCarState({ lat: 1, lon: 2 }, 40),
      locked: false,
      relockDeadline: 1_000,
      online: true,
    };
    store.save(state);
    expect(store.load(5)).toEqual({ ...state, online: false });
    expect(store.load(99)?.seq).toBe(99);
  });

  it('damaged files stop the car rather than boot it as new', () => {
    writeFileSync(join(dir, 'bad.json'), '{"v":1}');
    expect(() => createFileCarStore(join(dir, 'bad.json')).load(0)).toThrow(
      expect.objectContaining({ code: 'SIM_CAR_STATE_CORRUPT' }),
    );
    expect(() => createOutcomeMemory({ file: join(dir, 'bad.json') })).toThrow(
      expect.objectContaining({ code: 'SIM_CAR_STATE_CORRUPT' }),
    );
  });
});

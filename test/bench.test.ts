// The benchmark's pure helpers: percentiles, profile parsing, flags, the open loop's arrivals on a simulated clock,
// the floor's MQTT framing (no timing here).
import { describe, expect, it } from 'vitest';
import { findCompatible, vinProblem } from '../protocols/index.ts';
import { loadSeeds } from '../seeds/index.ts';
import {
  type CycleDriver,
  type CycleRun,
  cyclesOf,
  type OpenLoopClock,
  type OpenLoopRun,
  poissonGaps,
  runOpenLoop,
  uniformGaps,
} from './bench/cycles.ts';
import { benchVin, carFor } from './bench/fleet-data.ts';
import {
  CONNECT,
  connectClientId,
  decodePublish,
  encodeLength,
  encodePublish,
  PacketReader,
  PUBLISH,
  subackFor,
} from './bench/mqtt-wire.ts';
import { parseBenchArgs } from './bench/options.ts';
import { type CpuProfile, topFunctions } from './bench/profile.ts';
import { type BenchResults, type CyclePhase, cycleTable, targetsTable } from './bench/report.ts';
import { type LatencySummary, median, percentile, summarize } from './bench/stats.ts';

describe('bench statistics', () => {
  it('takes nearest-rank percentiles', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile(values, 0)).toBe(1);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('takes medians of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('summarizes unsorted latencies', () => {
    expect(summarize([5, 1, 3, 2, 4])).toEqual({ count: 5, p50: 3, p99: 5, max: 5, mean: 3 });
  });
});

describe('bench CPU profile parsing', () => {
  const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber });
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(root)'), children: [2, 3, 4, 5] },
      { id: 2, callFrame: frame('(idle)') },
      { id: 3, callFrame: frame('hot', 'file:///work/x/gateway/deliveries.ts', 9) },
      { id: 4, callFrame: frame('hot', 'file:///work/x/gateway/deliveries.ts', 9) },
      { id: 5, callFrame: frame('parse', 'file:///work/x/node_modules/zod/v4/core.js', 0) },
    ],
    startTime: 0,
    endTime: 100,
    // samples at 10 (idle), 20 (3), 40 (4), 70 (5); each owns the time until the next, the last until endTime.
    samples: [2, 3, 4, 5],
    timeDeltas: [10, 10, 20, 30],
  };

  it('sums self time per function and place, skipping idle, largest first', () => {
    const top = topFunctions(profile, 5);
    expect(top.map((f) => f.name)).toEqual([
      'hot (gateway/deliveries.ts:10)',
      'parse (node_modules/zod/v4/core.js:1)',
    ]);
    expect(top[0]?.selfMs).toBeCloseTo(0.05);
    expect(top[1]?.selfMs).toBeCloseTo(0.03);
    expect(top[0]?.share).toBeCloseTo(5 / 8);
  });

  it('names a native function with its nearest JavaScript caller', () => {
    const native: CpuProfile = {
      nodes: [
        { id: 1, callFrame: frame('(root)'), children: [2] },
        {
          id: 2,
          callFrame: frame('executeQuery', 'file:///w/node_modules/kysely/driver.js', 59),
          children: [3],
        },
        { id: 3, callFrame: frame('run'), children: [] },
      ],
      startTime: 0,
      endTime: 10,
      samples: [3],
      timeDeltas: [0],
    };
    expect(topFunctions(native, 1)[0]?.name).toBe('run ← executeQuery (node_modules/kysely/driver.js:60)');
  });

  it('falls back to hit counts when a profile has no samples', () => {
    const counted: CpuProfile = {
      ...profile,
      samples: undefined,
      timeDeltas: undefined,
      nodes: profile.nodes.map((n) => ({ ...n, hitCount: n.id === 5 ? 3 : n.id === 3 ? 1 : 0 })),
    };
    expect(topFunctions(counted, 1)).toEqual([
      { name: 'parse (node_modules/zod/v4/core.js:1)', selfMs: 0.075, share: 0.75 },
    ]);
  });
});

describe('bench flags', () => {
  it('defaults to the full run and --quick to small sizes', () => {
    const full = parseBenchArgs([]);
    const quick = parseBenchArgs(['--quick', '--cars', '500']);
    if (full.kind !== 'run' || quick.kind !== 'run') throw new Error('expected runs');
    expect(full.options).toMatchObject({
      cars: 10_000,
      couriers: 64,
      repeat: 3,
      mosquitto: '/usr/sbin/mosquitto',
    });
    expect([...full.options.phases]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(quick.options).toMatchObject({ cars: 500, couriers: 16, repeat: 1, floorCars: 500 });
  });

  it('refuses what cannot run', () => {
    for (const argv of [
      ['--cars', '0'],
      ['--couriers', '9', '--cars', '8'],
      ['--phases', '7'],
      ['--bogus'],
    ]) {
      expect(() => parseBenchArgs(argv)).toThrow(expect.objectContaining({ code: 'BENCH_ARGS_INVALID' }));
    }
    const off = parseBenchArgs(['--mosquitto', 'off', '--profile', 'off']);
    expect(off.kind === 'run' && off.options).toMatchObject({ mosquitto: null, profile: false });
  });

  it('runs phase 3 on both stores with an open loop unless told otherwise', () => {
    const full = parseBenchArgs([]);
    const quick = parseBenchArgs(['--quick']);
    const one = parseBenchArgs([
      '--store',
      'postgres,sqlite',
      '--arrivals',
      'uniform',
      '--open-loop-cycles',
      '0',
    ]);
    expect(full.kind === 'run' && full.options).toMatchObject({
      stores: ['sqlite', 'postgres'],
      openLoopCycles: 4_000,
      openLoopSeconds: 60,
      arrivals: 'poisson',
    });
    expect(quick.kind === 'run' && quick.options).toMatchObject({ openLoopCycles: 400, openLoopSeconds: 20 });
    // SQLite first whatever the order given, so the two variants always run in the same order.
    expect(one.kind === 'run' && one.options).toMatchObject({
      stores: ['sqlite', 'postgres'],
      arrivals: 'uniform',
      openLoopCycles: 0,
    });
    const pgOnly = parseBenchArgs(['--store', 'postgres']);
    expect(pgOnly.kind === 'run' && pgOnly.options.stores).toEqual(['postgres']);
    for (const argv of [
      ['--store', 'mysql'],
      ['--store', ''],
      ['--arrivals', 'bursty'],
      ['--open-loop-seconds', '0'],
    ]) {
      expect(() => parseBenchArgs(argv)).toThrow(expect.objectContaining({ code: 'BENCH_ARGS_INVALID' }));
    }
  });
});

/**
 * A discrete-event clock: time only moves when every pending promise has settled, straight to the earliest
 * timer. drive() runs a promise to its end on it; a wait that nothing would ever end fails the test.
 */
function simulatedClock(): OpenLoopClock & { drive<T>(work: Promise<T>): Promise<T> } {
  let now = 0;
  const timers: Array<{ at: number; seq: number; fire: () => void }> = [];
  let seq = 0;
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  return {
    now: () => now,
    until: (t) =>
      t <= now
        ? Promise.resolve()
        : new Promise<void>((fire) => {
            timers.push({ at: t, seq: seq++, fire });
          }),
    async drive(work) {
      let settled = false;
      const result = work.finally(() => {
        settled = true;
      });
      for (;;) {
        await turn();
        if (settled) return result;
        timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
        const next = timers.shift();
        if (!next) throw new Error('deadlock: nothing pending on the simulated clock');
        now = next.at;
        next.fire();
      }
    },
  };
}

/** A driver whose unlock and lock each take a set time on the clock, recording when each cycle began. */
function timedDriver(
  clock: OpenLoopClock,
  ms: { unlock: number; lock: number },
  fail?: (slot: number, k: number) => boolean,
) {
  const starts: Array<{ at: number; slot: number; k: number }> = [];
  const busy = new Set<number>();
  let overlaps = 0;
  const driver: CycleDriver = {
    async unlock(slot, k) {
      starts.push({ at: clock.now(), slot, k });
      if (busy.has(slot)) overlaps++;
      busy.add(slot);
      await clock.until(clock.now() + ms.unlock);
      if (fail?.(slot, k)) {
        busy.delete(slot);
        throw new Error(`unlock → 409 on slot ${slot}`);
      }
    },
    async lock(slot) {
      await clock.until(clock.now() + ms.lock);
      busy.delete(slot);
    },
  };
  return { driver, starts, overlaps: () => overlaps };
}

describe('bench open loop', () => {
  const base = { maxMs: 60_000, cap: 4, perSlot: 100 };

  it('issues arrivals at the rate asked and measures each cycle from its scheduled time', async () => {
    const clock = simulatedClock();
    const { driver, starts } = timedDriver(clock, { unlock: 2, lock: 3 });
    const run = await clock.drive(
      runOpenLoop({ ...base, ratePerSecond: 100, count: 10, gapMs: uniformGaps(100), clock, driver }),
    );
    expect(starts.map((s) => s.at)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    expect(run).toMatchObject({ offered: 10, completed: 10, dropped: 0, errors: 0, maxOutstanding: 1 });
    expect(run.unlock).toMatchObject({ p50: 2, p99: 2 });
    expect(run.lock.p99).toBe(3);
    expect(run.cycle.p99).toBe(5);
    expect(run.elapsedMs).toBe(95);
    expect(run.lateness.max).toBe(0);
  });

  it('keeps issuing while earlier cycles are outstanding, and drops arrivals beyond the cap', async () => {
    const clock = simulatedClock();
    const { driver, starts, overlaps } = timedDriver(clock, { unlock: 20, lock: 25 });
    const run = await clock.drive(
      runOpenLoop({ ...base, cap: 3, ratePerSecond: 100, count: 12, gapMs: uniformGaps(100), clock, driver }),
    );
    // One arrives every 10 ms and each cycle takes 45: the arrivals at 30, 40, 80 and 90 ms find three
    // outstanding. The others start on time, before the cycles ahead of them have ended.
    expect(starts.map((s) => s.at)).toEqual([0, 10, 20, 50, 60, 70, 100, 110]);
    expect(run).toMatchObject({ offered: 12, completed: 8, dropped: 4, maxOutstanding: 3, errors: 0 });
    expect(overlaps()).toBe(0);
    // The slot idle longest takes the next arrival: they take turns.
    expect(starts.map((s) => s.slot)).toEqual([0, 1, 2, 0, 1, 2, 0, 1]);
  });

  it('counts a late generator against the latency, not in its favour', async () => {
    const clock = simulatedClock();
    const late: OpenLoopClock = { now: clock.now, until: (t) => clock.until(t + 3) };
    const { driver } = timedDriver(clock, { unlock: 2, lock: 1 });
    const run = await clock.drive(
      runOpenLoop({ ...base, ratePerSecond: 50, count: 5, gapMs: uniformGaps(50), clock: late, driver }),
    );
    expect(run.lateness).toMatchObject({ p50: 3, max: 3 });
    expect(run.unlock.p99).toBe(5);
  });

  it('stops issuing at the time bound and waits for what is outstanding', async () => {
    const clock = simulatedClock();
    const { driver } = timedDriver(clock, { unlock: 200, lock: 200 });
    const run = await clock.drive(
      runOpenLoop({
        ...base,
        maxMs: 450,
        ratePerSecond: 10,
        count: 100,
        gapMs: uniformGaps(10),
        clock,
        driver,
      }),
    );
    expect(run).toMatchObject({ offered: 5, stoppedByTime: true, completed: 5, dropped: 0 });
    expect(run.elapsedMs).toBe(800);
  });

  it('retires a slot after its prepared cycles and counts the arrivals left without one', async () => {
    const clock = simulatedClock();
    const { driver, starts } = timedDriver(clock, { unlock: 1, lock: 1 });
    const run = await clock.drive(
      runOpenLoop({
        ...base,
        cap: 2,
        perSlot: 2,
        ratePerSecond: 100,
        count: 6,
        gapMs: uniformGaps(100),
        clock,
        driver,
      }),
    );
    expect(run).toMatchObject({ completed: 4, exhausted: 2, dropped: 0 });
    expect(starts.map((s) => [s.slot, s.k])).toEqual([
      [0, 0],
      [1, 0],
      [0, 1],
      [1, 1],
    ]);
  });

  it('counts a failed cycle as an error and frees its slot', async () => {
    const clock = simulatedClock();
    const { driver, starts } = timedDriver(clock, { unlock: 1, lock: 1 }, (slot, k) => slot === 0 && k === 0);
    const run = await clock.drive(
      runOpenLoop({ ...base, cap: 1, ratePerSecond: 100, count: 3, gapMs: uniformGaps(100), clock, driver }),
    );
    expect(run).toMatchObject({ completed: 2, errors: 1, dropped: 0 });
    expect(run.errorSamples).toEqual(['unlock → 409 on slot 0']);
    expect(starts.map((s) => s.k)).toEqual([0, 1, 2]);
  });

  it('spaces Poisson arrivals by exponential gaps drawn from the random source', () => {
    const draws = [0, 0.5, 0.75];
    const gap = poissonGaps(100, () => draws.shift() ?? 0);
    expect(gap()).toBe(0);
    expect(gap()).toBeCloseTo(10 * Math.LN2);
    expect(gap()).toBeCloseTo(10 * Math.log(4));
    expect(uniformGaps(40)()).toBe(25);
  });
});

describe('bench fleet', () => {
  it('makes valid VINs the catalog accepts as 2019 Chevrolets', () => {
    const { catalog } = loadSeeds();
    const vins = [0, 1, 9_999, 1_000_000].map(benchVin);
    expect(new Set(vins).size).toBe(4);
    for (const vin of vins) {
      expect(vinProblem(vin)).toBeNull();
      expect(vin.startsWith('1G1')).toBe(true);
    }
    expect(findCompatible(catalog, { make: 'Chevrolet', year: 2019, provider: 'onstar' })).not.toBeNull();
  });

  it('never gives two couriers the same car, and spreads the cycles evenly', () => {
    const couriers = 7;
    const cars = 50;
    for (let cycle = 0; cycle < 30; cycle++) {
      const used = Array.from({ length: couriers }, (_, i) => carFor(i, cycle, couriers, cars));
      expect(new Set(used).size).toBe(couriers);
      expect(Math.max(...used)).toBeLessThan(cars);
    }
    expect(Array.from({ length: couriers }, (_, i) => cyclesOf(i, couriers, 100))).toEqual([
      15, 15, 14, 14, 14, 14, 14,
    ]);
  });
});

describe('the floor’s MQTT framing', () => {
  it('encodes remaining lengths as MQTT 3.1.1 §2.2.3 does', () => {
    expect([...encodeLength(0)]).toEqual([0]);
    expect([...encodeLength(127)]).toEqual([0x7f]);
    expect([...encodeLength(128)]).toEqual([0x80, 0x01]);
    expect([...encodeLength(16_383)]).toEqual([0xff, 0x7f]);
    expect([...encodeLength(2_097_152)]).toEqual([0x80, 0x80, 0x80, 0x01]);
  });

  it('splits packets across chunk boundaries and decodes a QoS 1 PUBLISH', () => {
    const payload = Buffer.alloc(300, 'x');
    const wire = Buffer.concat([
      encodePublish('vehicles/V/commands', 513, payload),
      encodePublish('a', 1, Buffer.from('b')),
    ]);
    const reader = new PacketReader();
    const packets = [
      ...reader.push(wire.subarray(0, 3)),
      ...reader.push(wire.subarray(3, 200)),
      ...reader.push(wire.subarray(200)),
    ];
    expect(packets.map((p) => p.type)).toEqual([PUBLISH, PUBLISH]);
    expect(decodePublish(packets[0] as never)).toEqual({
      topic: 'vehicles/V/commands',
      qos: 1,
      packetId: 513,
      payload,
    });
  });

  it('reads the client id of a CONNECT and grants every filter of a SUBSCRIBE', () => {
    const id = Buffer.from('1G1ZE5ST5KF100231');
    const body = Buffer.concat([
      Buffer.from([0, 4]),
      Buffer.from('MQTT'),
      Buffer.from([4, 0x02, 0, 30, 0, id.length]),
      id,
    ]);
    const connect = new PacketReader().push(Buffer.concat([Buffer.from([0x10, body.length]), body]))[0];
    expect(connect?.type).toBe(CONNECT);
    expect(connectClientId(connect?.body as Buffer)).toBe('1G1ZE5ST5KF100231');
    const filter = Buffer.from('vehicles/V/commands');
    const subscribe = Buffer.concat([Buffer.from([0, 7, 0, filter.length]), filter, Buffer.from([1])]);
    expect([...subackFor(subscribe)]).toEqual([0x90, 3, 0, 7, 1]);
  });
});

describe('bench report of phase 3 on both stores', () => {
  const parsed = parseBenchArgs(['--quick']);
  if (parsed.kind !== 'run') throw new Error('expected a run');
  const options = { ...parsed.options, phases: [3] };
  const ms = (p50: number, p99: number): LatencySummary => ({ count: 100, p50, p99, max: p99, mean: p50 });
  const closed = (cyclesPerSecond: number): CycleRun => ({
    couriers: 16,
    cycles: 800,
    completed: 800,
    errors: 0,
    errorSamples: [],
    elapsedMs: 8_000,
    cyclesPerSecond,
    unlock: ms(150, 400),
    lock: ms(140, 380),
    cycle: ms(290, 700),
  });
  const open = (ratePerSecond: number, p99: number, dropped = 0): OpenLoopRun => ({
    ratePerSecond,
    offered: 400,
    stoppedByTime: false,
    dropped,
    exhausted: 0,
    cap: 16,
    maxOutstanding: 5,
    completed: 400 - dropped,
    errors: 0,
    errorSamples: [],
    elapsedMs: 8_000,
    completedPerSecond: ratePerSecond,
    lateness: ms(0.1, 2),
    unlock: ms(9, p99),
    lock: ms(8, 20),
    cycle: ms(17, 40),
  });
  const phase = (label: string, cyclesPerSecond: number, openLoop?: OpenLoopRun): CyclePhase => ({
    label,
    storm: { cars: 300, connected: 300, ms: 2_000 },
    runs: [closed(cyclesPerSecond)],
    cpu: [{ 'gateway + broker': 5_000 }],
    ...(openLoop ? { openLoop } : {}),
  });
  const results = (more: Partial<BenchResults>): BenchResults => ({
    startedAt: '2026-01-01T00:00:00.000Z',
    command: 'npm run bench -- --quick',
    machine: {
      load: { start: 1, end: 1 },
      cpus: 2,
      cpuModel: 'x',
      memoryGiB: 1,
      node: 'v24',
      platform: 'linux',
    },
    options,
    notes: [],
    ...more,
  });
  const rowOf = (table: string, start: string): string[] | undefined =>
    table
      .split('\n')
      .map((line) => line.split(' | ').map((cell) => cell.replace(/^\| | \|$/g, '')))
      .find((cells) => cells[0]?.startsWith(start));

  it('gives the ratio of the two stores and both p99s, each named for its loop', () => {
    const r = results({
      embedded: phase('phase 3 embedded, SQLite', 100, open(50, 20)),
      postgres: phase('phase 3 embedded, PostgreSQL', 60, open(30, 40, 3)),
    });
    const targets = targetsTable(r);
    expect(rowOf(targets, 'cycles/s on PostgreSQL over SQLite')).toEqual([
      'cycles/s on PostgreSQL over SQLite, same run',
      '≥ 0.7×',
      '0.60× (60 vs 100)',
      '**missed**',
    ]);
    expect(rowOf(targets, 'closed-loop unlock p99 at saturation (C = 16 couriers), SQLite')?.[2]).toBe(
      '400.0 ms',
    );
    expect(rowOf(targets, 'open-loop unlock p99 at 50.0 cycles/s')?.slice(1)).toEqual([
      '≤ 25 ms',
      '20.0 ms (p50 9.0 ms; dropped 0 of 400, errors 0)',
      'met',
    ]);
    // Dropped arrivals are not in the latencies: the figure does not count as met with any.
    expect(rowOf(targets, 'open-loop unlock p99 at 30.0 cycles/s')?.[3]).toBe('**missed**');
    const table = cycleTable(r) ?? '';
    expect(rowOf(table, 'phases 3-5')).toEqual([
      'phases 3-5',
      '3 embedded broker, SQLite',
      '3 embedded broker, PostgreSQL',
    ]);
    expect(rowOf(table, 'open loop: unlock p50 / p99')?.slice(1)).toEqual([
      '9.0 / 20.0 / 20.0',
      '9.0 / 40.0 / 40.0',
    ]);
  });

  it('says why PostgreSQL was not measured', () => {
    const r = results({
      embedded: phase('phase 3 embedded, SQLite', 100),
      postgres: {
        skipped: 'PostgreSQL at postgres://postgres@127.0.0.1:1/test is unreachable (ECONNREFUSED)',
      },
    });
    expect(rowOf(targetsTable(r), 'cycles/s on PostgreSQL over SQLite')?.slice(2)).toEqual([
      'not measured: PostgreSQL at postgres://postgres@127.0.0.1:1/test is unreachable (ECONNREFUSED)',
      '—',
    ]);
    expect(rowOf(cycleTable(r) ?? '', 'phases 3-5')).toEqual(['phases 3-5', '3 embedded broker, SQLite']);
  });
});

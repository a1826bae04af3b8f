// Test harness: counts what unlock+lock cycles ask of the store, statement by statement, through a whole system in
// this process (the test stack: gateway, embedded broker, simulated fleet). Used by `npm run bench:sql` and by
// test/write-budget.test.ts, which pins the budget.
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import type { SeedLocation } from '../../seeds/index.ts';
import {
  COMPLETED,
  linkSeeded,
  lockBy,
  registerSeededLocation,
  scheduleParked,
  unlockAt,
} from './delivery.ts';
import { startStack } from './stack.ts';
import type { Dialect } from './temp-store.ts';

export interface Tally {
  count: number;
  micros: number;
}

type Statement = { run: Fn; all: Fn; get: Fn; iterate: Fn };
type Fn = (...args: unknown[]) => unknown;

export interface Counting {
  /** Where statements are counted now (null: not counting). */
  into: Map<string, Tally> | null;
}

const tally = (into: Map<string, Tally>, text: string, started: bigint): void => {
  const t = into.get(text) ?? { count: 0, micros: 0 };
  t.count++;
  t.micros += Number(process.hrtime.bigint() - started) / 1000;
  into.set(text, t);
};

/**
 * Counts and times every statement of every better-sqlite3 database opened after this call, and every query of
 * every pg client, by SQL text, into `counting.into` while it is set.
 */
export function countStatements(): Counting {
  const counting: Counting = { into: null };
  const client = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const query = client.query;
  client.query = function (this: unknown, ...args: unknown[]) {
    const into = counting.into;
    const first = args[0];
    const text = typeof first === 'string' ? first : (first as { text?: unknown } | undefined)?.text;
    if (!into || typeof text !== 'string') return query.apply(this, args);
    const started = process.hrtime.bigint();
    const result = query.apply(this, args) as Promise<unknown>;
    return result.finally(() => tally(into, text.replace(/\s+/g, ' ').trim().toLowerCase(), started));
  };
  const proto = BetterSqlite3.prototype as unknown as { prepare: (sql: string) => Statement };
  const prepare = proto.prepare;
  proto.prepare = function (this: unknown, sql: string): Statement {
    const statement = prepare.call(this, sql);
    const text = sql.replace(/\s+/g, ' ').trim();
    for (const method of ['run', 'all', 'get', 'iterate'] as const) {
      const original = statement[method];
      statement[method] = (...args: unknown[]) => {
        const into = counting.into;
        if (!into) return original.apply(statement, args);
        const started = process.hrtime.bigint();
        try {
          return original.apply(statement, args);
        } finally {
          tally(into, text, started);
        }
      };
    }
    return statement;
  };
  return counting;
}

/** What the cycles cost, per cycle, and the report's lines. */
export interface CycleCost {
  lines: string[];
  summary: string;
  statements: number;
  commits: number;
}

/**
 * Cars the cycles take turns on. A cycle makes its car send four PUBLISH packets (two acks, two state reports) in
 * about half a second, faster than the broker lets one car publish for long (PROTOCOL.md §2: a burst of 20, then 5
 * per second): one car driven back to back is disconnected after about ten cycles, and then every cycle would pay
 * its reconnect (presence writes, a full state report). Taking turns keeps each car at about 2 PUBLISH per second.
 */
export const CYCLE_CARS = 4;

/** Runs the cycles on one dialect's store and gives the report's lines and a summary table row. */
export async function measure(dialect: Dialect, cycles: number, counting: Counting): Promise<CycleCost> {
  const tallies = new Map<string, Tally>();
  // The per-car command budget must allow a car's share of the cycles, as in the bench.
  const stack = await startStack(
    {
      RATE_LIMIT_PER_KEY_PER_MIN: '100000',
      VEHICLE_COMMAND_BURST: '100',
      VEHICLE_COMMANDS_PER_MIN: '600',
    },
    { dialect },
  );
  try {
    const cars = stack.seeds.vehicles
      .filter((v) => v.year >= 2015 && v.provider === 'onstar')
      .slice(0, CYCLE_CARS);
    if (cars.length < CYCLE_CARS)
      throw new Error(`the seeds have fewer than ${CYCLE_CARS} compatible OnStar cars`);
    const locations = new Map<string, { id: string; location: SeedLocation }>();
    for (const car of cars) {
      await linkSeeded(stack, car.vin);
      if (!locations.has(car.ownerId))
        locations.set(car.ownerId, await registerSeededLocation(stack, car.ownerId));
    }
    const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 200));
    let flushes = 0;
    for (let i = 0; i < cycles; i++) {
      const car = cars[i % cars.length] as (typeof cars)[number];
      const { id: locationId, location } = locations.get(car.ownerId) as {
        id: string;
        location: SeedLocation;
      };
      const id = await scheduleParked(stack, car.vin, locationId);
      await settle();
      const before = stack.gateway.store.stats().flushes;
      counting.into = tallies;
      const unlock = await unlockAt(stack, id, location);
      const lock = await lockBy(stack, id);
      // The car's state reports after each command are part of the cycle's cost.
      await settle();
      counting.into = null;
      flushes += stack.gateway.store.stats().flushes - before;
      if (unlock.status !== COMPLETED.unlock || lock.status !== COMPLETED.lock) {
        throw new Error(`cycle ${i}: unlock ${unlock.status}, lock ${lock.status}`);
      }
    }
    const dropped = stack.logs.filter((l) => l.event === 'broker.wire_refused').length;
    if (dropped > 0)
      throw new Error(`the broker dropped a car ${dropped} times: the cycles would count reconnects`);
    const rows = [...tallies].sort((a, b) => b[1].micros - a[1].micros);
    const total = rows.reduce(
      (sum, [, t]) => ({ count: sum.count + t.count, micros: sum.micros + t.micros }),
      {
        count: 0,
        micros: 0,
      },
    );
    const commits = tallies.get('commit')?.count ?? 0;
    const where = dialect === 'sqlite' ? 'inside SQLite' : 'round trips to PostgreSQL';
    const lines = [
      `Store work per unlock+lock cycle on ${dialect} (${cycles} cycles, one at a time, taking turns on ${cars.length} cars so that none exceeds the broker's per-car publish rate; in-process stack):`,
      '',
      `- statements: ${(total.count / cycles).toFixed(1)}, ${(total.micros / cycles).toFixed(0)} µs ${where}`,
      `- transactions committed: ${(commits / cycles).toFixed(1)}; WAL flushes (fdatasync): ${(flushes / cycles).toFixed(1)}`,
      '',
      '| per cycle | µs per cycle | µs each | statement |',
      '| ---: | ---: | ---: | --- |',
      ...rows.map(
        ([sql, t]) =>
          `| ${(t.count / cycles).toFixed(1)} | ${(t.micros / cycles).toFixed(0)} | ${(t.micros / t.count).toFixed(1)} | \`${sql.length > 110 ? `${sql.slice(0, 107)}...` : sql}\` |`,
      ),
    ];
    const summary = `| ${dialect} | ${(total.count / cycles).toFixed(1)} | ${(total.micros / cycles).toFixed(0)} | ${(commits / cycles).toFixed(1)} | ${(flushes / cycles).toFixed(1)} |`;
    return { lines, summary, statements: total.count / cycles, commits: commits / cycles };
  } finally {
    await stack.close();
  }
}

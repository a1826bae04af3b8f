// Owns `npm run bench:sql`: what one unlock+lock cycle asks of the store, statement by statement. A whole system
// runs in this process (the test stack: gateway, embedded broker, simulated fleet); deliveries are set up first,
// then only the unlock and lock requests (and what they set off: acks, state reports) are counted.
import '../../runtime.ts';
import { parseArgs } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import {
  COMPLETED,
  linkSeeded,
  lockBy,
  registerSeededLocation,
  scheduleParked,
  unlockAt,
} from '../helpers/delivery.ts';
import { startStack } from '../helpers/stack.ts';
import { DIALECTS, type Dialect } from '../helpers/temp-store.ts';

const USAGE = `Usage: npm run bench:sql -- [--cycles N] [--dialect sqlite|postgres|both]

Runs N unlock+lock cycles one after another (default 50), each on a fresh delivery, on each store dialect
(default both: SQLite, then PostgreSQL in a fresh schema of TEST_DATABASE_URL), and prints per cycle: every SQL
statement the store ran (count, and time: inside SQLite, or the round trip to PostgreSQL), the transactions
committed and the WAL flushes (SQLite).`;

interface Tally {
  count: number;
  micros: number;
}

type Statement = { run: Fn; all: Fn; get: Fn; iterate: Fn };
type Fn = (...args: unknown[]) => unknown;

interface Counting {
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
function countStatements(): Counting {
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

async function main(): Promise<void> {
  let values: { cycles?: string; dialect?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        cycles: { type: 'string' },
        dialect: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`bench:sql: ${(err as Error).message.split('\n')[0]}; see --help\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const cycles = Number(values.cycles ?? 50);
  if (!Number.isInteger(cycles) || cycles < 1 || cycles > 100) {
    process.stderr.write(
      'bench:sql: --cycles must be a whole number from 1 to 100 (one car takes at most 100 unlocks)\n',
    );
    process.exit(2);
  }
  const dialect = values.dialect ?? 'both';
  if (dialect !== 'both' && !DIALECTS.includes(dialect as Dialect)) {
    process.stderr.write('bench:sql: --dialect must be sqlite, postgres or both\n');
    process.exit(2);
  }
  const counting = countStatements();
  const summaries: string[] = [];
  for (const d of dialect === 'both' ? DIALECTS : [dialect as Dialect]) {
    const { lines, summary } = await measure(d, cycles, counting);
    process.stdout.write(`${lines.join('\n')}\n\n`);
    summaries.push(summary);
  }
  if (summaries.length > 1) {
    process.stdout.write(
      `| dialect | statements | µs in the store | transactions | flushes |\n| --- | ---: | ---: | ---: | ---: |\n${summaries.join('\n')}\n`,
    );
  }
}

/** Runs the cycles on one dialect's store and gives the report's lines and a summary table row. */
async function measure(
  dialect: Dialect,
  cycles: number,
  counting: Counting,
): Promise<{ lines: string[]; summary: string }> {
  const tallies = new Map<string, Tally>();
  // One car takes every cycle: the per-car budget must allow it, as in the bench.
  const stack = await startStack(
    {
      RATE_LIMIT_PER_KEY_PER_MIN: '100000',
      VEHICLE_COMMAND_BURST: '100',
      VEHICLE_COMMANDS_PER_MIN: '600',
    },
    { dialect },
  );
  try {
    const car = stack.seeds.vehicles.find((v) => v.year >= 2015 && v.provider === 'onstar');
    if (!car) throw new Error('the seeds have no compatible OnStar car');
    const { vin } = car;
    await linkSeeded(stack, vin);
    const { id: locationId, location } = await registerSeededLocation(stack, car.ownerId);
    const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 200));
    let flushes = 0;
    for (let i = 0; i < cycles; i++) {
      const id = await scheduleParked(stack, vin, locationId);
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
      `Store work per unlock+lock cycle on ${dialect} (${cycles} cycles, one at a time, in-process stack):`,
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
    return { lines, summary };
  } finally {
    await stack.close();
  }
}

await main();

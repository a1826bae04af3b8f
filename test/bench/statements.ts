// Owns `npm run bench:sql`: what one unlock+lock cycle asks of the store, statement by statement. A whole system
// runs in this process (the test stack: gateway, embedded broker, simulated fleet); deliveries are set up first,
// then only the unlock and lock requests (and what they set off: acks, state reports) are counted.
import '../../runtime.ts';
import { parseArgs } from 'node:util';
import { countStatements, measure } from '../helpers/statement-count.ts';
import { DIALECTS, type Dialect } from '../helpers/temp-store.ts';

const USAGE = `Usage: npm run bench:sql -- [--cycles N] [--dialect sqlite|postgres|both]

Runs N unlock+lock cycles one after another (default 50), each on a fresh delivery, taking turns on a few cars (one
car driven back to back would exceed the broker's per-car publish rate and be disconnected), on each store dialect
(default both: SQLite, then PostgreSQL in a fresh schema of TEST_DATABASE_URL), and prints per cycle: every SQL
statement the store ran (count, and time: inside SQLite, or the round trip to PostgreSQL), the transactions
committed and the WAL flushes (SQLite).`;

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

await main();

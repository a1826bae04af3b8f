// Global setup of the `postgres` and `once` projects: the run stops with one line when TEST_DATABASE_URL does not
// answer, rather than skip the PostgreSQL half of the matrix or fail test by test.
import pg from 'pg';
import { redactUrl } from '../../gateway/store/store.ts';
import { TEST_DATABASE_URL } from './pg-schema.ts';

export default async function checkPostgres(): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('select 1');
  } catch (err) {
    const cause = err instanceof Error ? err.message.split('\n')[0] || err.name : String(err);
    const refusal = new Error(
      `TEST_DATABASE_URL (${redactUrl(TEST_DATABASE_URL)}) is unreachable: ${cause}; the tests on PostgreSQL need it ` +
        '(.ci/run starts the local server; npx vitest run --project sqlite runs the SQLite half without it)',
    );
    // One line: the stack would only point here.
    refusal.stack = refusal.message;
    throw refusal;
  } finally {
    await client.end().catch(() => {});
  }
}

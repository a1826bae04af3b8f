import { describe, expect, it } from 'vitest';
// The modules that declare prepared queries, imported for their registrations.
import '../gateway/access/api-keys.ts';
import '../gateway/deliveries/outcomes.ts';
import '../gateway/deliveries/reconcile.ts';
import '../gateway/deliveries/settlement.ts';
import '../gateway/store/audit.ts';
import '../gateway/store/commands.ts';
import '../gateway/store/deliveries.ts';
import '../gateway/store/timeline.ts';
import '../gateway/store/vehicles.ts';
import { PREPARED_QUERIES } from '../gateway/store/prepared.ts';
import { DIALECTS, useTempStore } from './helpers/temp-store.ts';

const temp = useTempStore('prepared-', 'all');
const pgTemp = useTempStore('prepared-pg-', 'all', 'postgres');

/** Distinct values per position (two sets), so a parameter bound to the wrong argument shows. */
const valuesFor = (arity: number, set: number): unknown[] =>
  Array.from({ length: arity }, (_, i) => (i % 2 === 0 ? `v${set}-${i}` : 1000 * set + i));

describe('prepared queries', () => {
  it('are registered by the store modules', () => {
    expect(PREPARED_QUERIES.length).toBeGreaterThanOrEqual(12);
  });

  it.each(DIALECTS)(
    'give the SQL and parameters of their builder on %s, for two different sets of values',
    (dialect) => {
      const store = dialect === 'postgres' ? pgTemp.store() : temp.store();
      for (const q of PREPARED_QUERIES) {
        for (const set of [1, 2]) {
          const args = valuesFor(q.build.length - 1, set);
          const prepared = q.compile(store.db, ...args);
          const built = q.build(store.db, ...args).compile();
          expect(prepared.sql).toBe(built.sql);
          expect(prepared.parameters).toEqual(built.parameters);
        }
      }
    },
  );

  // On SQLite, with values of any type; on PostgreSQL the typed flows (signed acks, revocation, the delivery
  // end-to-end suite) run every one of them.
  it('run inside a transaction and outside one (the store accepts every one of them)', async () => {
    const store = temp.store();
    // Reads and writes of unknown rows change nothing; inserts are rolled back.
    for (const q of PREPARED_QUERIES) {
      const args = valuesFor(q.build.length - 1, 3);
      const sqlText = q.compile(store.db, ...args).sql;
      if (sqlText.startsWith('insert')) {
        await expect(
          store.db.transaction().execute(async (trx) => {
            await q(trx, ...args);
            throw new Error('roll back');
          }),
        ).rejects.toThrow(/roll back|FOREIGN KEY|constraint/i);
      } else {
        await expect(q(store.db, ...args)).resolves.toHaveProperty('rows');
      }
    }
  });
});

// The write path's budget as behaviour (issue 14): an unlock+lock cycle through the real store, on both dialects,
// commits four units (each decision and each ack one, with its key use, timeline, audit and outbox rows), and the
// statements it runs stay within the budget bench:sql reports.
import { afterAll, describe, expect, it } from 'vitest';
import { countStatements, measure } from './helpers/statement-count.ts';
import { DIALECTS } from './helpers/temp-store.ts';

const counting = countStatements();
afterAll(() => {
  counting.into = null;
});

/**
 * Statements per cycle each dialect may run: what bench:sql measures (about 40 on SQLite, 57 on PostgreSQL), and two
 * more for work in the background (the webhook dispatcher's poll, a car's periodic report) that may fall inside the
 * three cycles. PostgreSQL also takes the audit log's advisory lock (once per unit) and reads the tail, and, since
 * any gateway on PostgreSQL may have replicas beside it, pays gateway/cluster/'s coordination: a lease per delivery
 * in flight (taken and dropped per request), the shared per-key window and the per-vehicle budget (about 12
 * statements per cycle, bench:sql).
 */
const BUDGET = { sqlite: 43, postgres: 59 } as const;

describe.each(DIALECTS)('one decision, one write on %s', (dialect) => {
  it('an unlock+lock cycle commits four units: the unlock, its ack, the lock, its ack', async () => {
    const cost = await measure(dialect, 3, counting);
    // Each decision and each ack is one unit: the request's key use rides with the decision, the car's lock state
    // with the ack, and the state report after it changes nothing, so it commits nothing.
    // At most one commit in the three cycles may be background work (a presence message of the car).
    expect(cost.commits).toBeGreaterThanOrEqual(4);
    expect(cost.commits * 3).toBeLessThanOrEqual(4 * 3 + 1);
    expect(cost.statements).toBeLessThanOrEqual(BUDGET[dialect]);
  }, 60_000);
});

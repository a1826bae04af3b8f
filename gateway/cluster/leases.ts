// Owns leases in the shared PostgreSQL store: a named right (a background job, a delivery in flight) that one
// replica holds until it releases it or stops renewing it; expiry is read on the database's clock, so replicas'
// clocks need not agree.
import { type Kysely, sql } from 'kysely';
import type { Database } from '../store/schema.ts';

/** Milliseconds since the epoch on the database server's clock. */
const DB_NOW = sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`;

export interface Leases {
  /** Who holds leases for this process: `<replica>/<instance>`, new at every start. */
  readonly holder: string;
  /**
   * Takes the lease, or renews it when this process holds it already; false while another holder's lease runs.
   * A lease lasts ttlMs from now, on the database's clock.
   */
  acquire(name: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up at once (a no-op unless this process holds it). */
  release(name: string): Promise<void>;
  /** Of these names, the ones another holder's unexpired lease covers. */
  heldElsewhere(names: readonly string[]): Promise<Set<string>>;
}

export function createLeases(db: Kysely<Database>, holder: string): Leases {
  return {
    holder,
    async acquire(name, ttlMs) {
      // One statement decides: a row that is free, expired, or already ours becomes ours; two replicas racing for
      // it are serialised by the primary key's row lock, and only one gets a row back.
      const { rows } = await sql<{ holder: string }>`
        insert into leases (name, holder, expires_at) values (${name}, ${holder}, ${DB_NOW} + ${ttlMs})
        on conflict (name) do update set holder = excluded.holder, expires_at = excluded.expires_at
        where leases.holder = excluded.holder or leases.expires_at <= ${DB_NOW}
        returning holder`.execute(db);
      return rows.length === 1;
    },
    async release(name) {
      await sql`delete from leases where name = ${name} and holder = ${holder}`.execute(db);
    },
    async heldElsewhere(names) {
      if (names.length === 0) return new Set();
      const { rows } = await sql<{ name: string }>`
        select name from leases
        where name in (${sql.join(names)}) and holder <> ${holder} and expires_at > ${DB_NOW}`.execute(db);
      return new Set(rows.map((r) => r.name));
    },
  };
}

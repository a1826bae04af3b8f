// Owns ordering the units of work of several replicas on PostgreSQL: each unit first takes the audit log's
// transaction-scoped advisory lock, so that two replicas never read the same tail of the log and append beside each
// other (protocols/AUDIT.md §4). The store's append then knows it holds the lock (lockAuditLog); taking it first
// here keeps one lock order: a unit that updated a row and then waited for the log's lock could otherwise deadlock
// with a unit that appended first and then wanted that row.
import { lockAuditLog, AUDIT_APPEND_LOCK as STORE_AUDIT_LOCK } from '../store/audit.ts';
import type { Write } from '../store/group-commit.ts';

/** The key the store's audit append locks on PostgreSQL ('audi'); the same one, so the two never disagree. */
export const AUDIT_APPEND_LOCK = STORE_AUDIT_LOCK;

export function serialiseAcrossReplicas(write: Write): Write {
  return (unit) =>
    write(async (trx) => {
      // Re-entrant within the transaction a group commit shares among units; released at its commit or rollback.
      await lockAuditLog(trx);
      return unit(trx);
    });
}

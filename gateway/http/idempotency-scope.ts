// Owns what a request adds to the first unit of work it commits: its API key's use (the `api_key_used` audit
// entry) and the mark of its Idempotency-Key, both in the effect's own transaction. A crash before the response is
// stored can then never let a retry run the effect a second time, and no effect commits without its key's use.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AuditInput } from '../../protocols/audit/index.ts';
import { queueAudit } from '../store/audit.ts';
import type { Write, WriteUnit } from '../store/group-commit.ts';
import { markIdempotencyCommitted } from './idempotency-records.ts';

/** The key a request holds, while it holds it. */
export interface HeldKey {
  apiKeyId: string;
  key: string;
  /** The response is stored (or the key freed): later writes of the request no longer touch the key. */
  settled: boolean;
  /** A unit of this request committed, and with it the mark. */
  marked: boolean;
}

export interface RequestScope {
  held: HeldKey | null;
  /** The key's use, not written yet; it goes with the request's first unit, or alone before the reply. */
  keyUse: AuditInput | null;
  /** A unit carrying keyUse is being written: another unit of the same request must not carry it too. */
  keyUseWriting: boolean;
}

export interface IdempotencyScope {
  /** Runs the rest of a request (its hooks and handler) in a scope that can hold a key; gives done the scope. */
  enter(done: (scope: RequestScope) => void): void;
  /** Gives the scope of the running request its key (after the claim). */
  hold(held: HeldKey): void;
  /** Gives the running request its key's use, to be written with its first unit (protocols/AUDIT.md §1). */
  deferKeyUse(entry: AuditInput): void;
  /**
   * Writes the running request's key use alone if no unit carried it yet (a request that changed nothing, or
   * whose units all failed). Called before the reply leaves: if it fails, so does the reply.
   */
  flushKeyUse(write: Write, scope: RequestScope | undefined): Promise<void>;
  /** A write whose units, inside a request, also carry the key's use and mark its key, in their own transaction. */
  wrap(write: Write): Write;
}

export function createIdempotencyScope(): IdempotencyScope {
  const als = new AsyncLocalStorage<RequestScope>();
  return {
    enter(done) {
      const scope: RequestScope = { held: null, keyUse: null, keyUseWriting: false };
      als.run(scope, () => done(scope));
    },
    hold(held) {
      const scope = als.getStore();
      if (scope) scope.held = held;
    },
    deferKeyUse(entry) {
      const scope = als.getStore();
      if (scope) scope.keyUse = entry;
    },
    async flushKeyUse(write, scope) {
      const entry = scope?.keyUse;
      if (!scope || !entry || scope.keyUseWriting) return;
      scope.keyUse = null;
      try {
        await write((trx) => queueAudit(trx, entry));
      } catch (error) {
        scope.keyUse = entry;
        throw error;
      }
    },
    wrap(write) {
      return <T>(unit: WriteUnit<T>): Promise<T> => {
        const scope = als.getStore();
        const held = scope?.held;
        const mark = held && !held.settled && !held.marked ? held : null;
        const keyUse = scope && !scope.keyUseWriting ? scope.keyUse : null;
        if (!scope || (!mark && !keyUse)) return write(unit);
        if (keyUse) scope.keyUseWriting = true;
        return write(async (trx) => {
          if (keyUse) await queueAudit(trx, keyUse);
          const value = await unit(trx);
          if (mark) await markIdempotencyCommitted(trx, mark.apiKeyId, mark.key);
          return value;
        }).then(
          (value) => {
            if (mark) mark.marked = true;
            if (keyUse) {
              scope.keyUse = null;
              scope.keyUseWriting = false;
            }
            return value;
          },
          (error: unknown) => {
            if (keyUse) scope.keyUseWriting = false;
            throw error;
          },
        );
      };
    },
  };
}

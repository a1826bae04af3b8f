// Owns tying a request's Idempotency-Key to the writes its effect makes: the first unit of work a request
// commits also marks its key `committed`, in the same transaction, so a crash before the response is stored
// can never let a retry run the effect a second time.
import { AsyncLocalStorage } from 'node:async_hooks';
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

export interface IdempotencyScope {
  /** Runs the rest of a request (its hooks and handler) in a scope that can hold a key. */
  enter(done: () => void): void;
  /** Gives the scope of the running request its key (after the claim). */
  hold(held: HeldKey): void;
  /** A write whose units, inside a request holding a key, also mark that key in their own transaction. */
  wrap(write: Write): Write;
}

export function createIdempotencyScope(): IdempotencyScope {
  const als = new AsyncLocalStorage<{ held: HeldKey | null }>();
  return {
    enter(done) {
      als.run({ held: null }, done);
    },
    hold(held) {
      const scope = als.getStore();
      if (scope) scope.held = held;
    },
    wrap(write) {
      return <T>(unit: WriteUnit<T>): Promise<T> => {
        const held = als.getStore()?.held;
        if (!held || held.settled || held.marked) return write(unit);
        return write(async (trx) => {
          const value = await unit(trx);
          await markIdempotencyCommitted(trx, held.apiKeyId, held.key);
          return value;
        }).then((value) => {
          held.marked = true;
          return value;
        });
      };
    },
  };
}

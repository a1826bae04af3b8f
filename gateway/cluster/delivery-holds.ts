// Owns holding a delivery across replicas: the in-process mutex first (commands to one delivery never interleave
// here), then a lease on the delivery in the shared store, renewed while the command runs, so that no other
// replica sends a command for it meanwhile; a replica that dies leaves the lease to expire.
import { createKeyedMutex, type KeyedMutex } from '../deliveries/keyed-mutex.ts';
import type { Leases } from './leases.ts';

export interface DeliveryHoldsDeps {
  leases: Leases;
  /** How long a hold lasts without renewal: longer than the longest command (ack wait plus state queries). */
  ttlMs: number;
  /** How long to wait between attempts while another replica holds the delivery. */
  retryMs?: number;
  local?: KeyedMutex;
}

export interface DeliveryHolds extends KeyedMutex {
  /** Of these delivery ids, the ones another replica holds now. */
  heldElsewhere(ids: readonly string[]): Promise<Set<string>>;
}

export const leaseOfDelivery = (id: string): string => `delivery:${id}`;

export function createDeliveryHolds(deps: DeliveryHoldsDeps): DeliveryHolds {
  const { leases, ttlMs } = deps;
  const retryMs = deps.retryMs ?? 50;
  const local = deps.local ?? createKeyedMutex();
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

  async function take(id: string, busy?: () => Error): Promise<void> {
    for (;;) {
      if (await leases.acquire(leaseOfDelivery(id), ttlMs)) return;
      if (busy) throw busy();
      await sleep(retryMs);
    }
  }

  return {
    run(key, fn, options) {
      return local.run(key, async () => {
        await take(key, options?.busy);
        // Renewed well before it runs out, so a long command keeps it; stopped before it is released.
        const renew = setInterval(
          () => void leases.acquire(leaseOfDelivery(key), ttlMs).catch(() => {}),
          ttlMs / 3,
        );
        renew.unref();
        try {
          return await fn();
        } finally {
          clearInterval(renew);
          await leases.release(leaseOfDelivery(key)).catch(() => {});
        }
      });
    },
    held: (key) => local.held(key),
    async heldElsewhere(ids) {
      const names = await leases.heldElsewhere(ids.map(leaseOfDelivery));
      return new Set(ids.filter((id) => names.has(leaseOfDelivery(id))));
    },
  };
}

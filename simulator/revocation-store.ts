// Owns the car's list of revoked deliveries: each kept until its tokens could have expired, bounded, optionally persisted.
import { z } from 'zod';
import { type Cell, fileCell, memoryCell } from './state-file.ts';

export interface RevocationStore {
  isRevoked(deliveryId: string): boolean;
  /**
   * Records deliveryId as revoked until untilMs (a later untilMs extends an earlier one). 'full' when the store
   * holds capacity unexpired entries or the record cannot be persisted: the car then refuses the revoke.
   */
  revoke(deliveryId: string, untilMs: number): 'ok' | 'full';
  /** Number of revocations not expired by the last known good time. */
  size(): number;
}

export interface MemoryRevocationStoreDeps {
  capacity: number;
  /**
   * The car's last known good time (the replay store's). Entries are pruned by it, never by the raw clock, so a
   * clock moved forward and back cannot lift a revocation early; with no good time nothing is pruned.
   */
  lastGoodTime: () => number | null;
}

export interface FileRevocationStoreDeps extends MemoryRevocationStoreDeps {
  file: string;
  onError?: (err: unknown) => void;
}

const RevocationFileSchema = z.strictObject({
  v: z.literal(1),
  entries: z.array(z.tuple([z.string().min(1).max(64), z.number().int().nonnegative()])),
});
type RevocationFile = z.infer<typeof RevocationFileSchema>;

function unexpired(file: RevocationFile, floor: number | null): Map<string, number> {
  const entries = new Map(file.entries);
  if (floor !== null) for (const [id, untilMs] of entries) if (untilMs <= floor) entries.delete(id);
  return entries;
}

function createStore(deps: MemoryRevocationStoreDeps, cell: Cell<RevocationFile>): RevocationStore {
  return {
    isRevoked: (deliveryId) => unexpired(cell.read(), deps.lastGoodTime()).has(deliveryId),
    revoke(deliveryId, untilMs) {
      const entries = unexpired(cell.read(), deps.lastGoodTime());
      const known = entries.get(deliveryId);
      if (known === undefined && entries.size >= deps.capacity) return 'full';
      entries.set(deliveryId, Math.max(known ?? 0, untilMs));
      try {
        cell.write({ v: 1, entries: [...entries] });
      } catch {
        return 'full';
      }
      return 'ok';
    },
    size: () => unexpired(cell.read(), deps.lastGoodTime()).size,
  };
}

export function createMemoryRevocationStore(deps: MemoryRevocationStoreDeps): RevocationStore {
  return createStore(deps, memoryCell<RevocationFile>({ v: 1, entries: [] }));
}

/** Revocations persisted to a JSON file; an unreadable file throws SIM_REVOCATION_STORE_CORRUPT at creation. */
export function createFileRevocationStore(deps: FileRevocationStoreDeps): RevocationStore {
  return createStore(
    deps,
    fileCell({
      file: deps.file,
      schema: RevocationFileSchema,
      initial: () => ({ v: 1 as const, entries: [] }),
      corruptCode: 'SIM_REVOCATION_STORE_CORRUPT',
      onError: deps.onError,
    }),
  );
}

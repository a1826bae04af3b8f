// Owns the car's single-use memory of token ids (jti) and its last known good time: bounded, optionally persisted.
import { z } from 'zod';
import type { ReplayGuard } from '../protocols/token.ts';
import { type Cell, fileCell, memoryCell } from './state-file.ts';

export interface ReplayStore extends ReplayGuard {
  /** Number of remembered jti values that have not expired by the last known good time. */
  size(): number;
  /**
   * The car's last known good time, ms: its own time when it last accepted a token (a moment a gateway-signed
   * validity window vouched for). The car's time never goes back below it (TOKEN.md §6.4). Null before the first.
   */
  lastGoodTime(): number | null;
}

export interface MemoryReplayStoreDeps {
  /** Most jti values remembered at once; beyond it claims answer 'full' (fail closed). */
  capacity: number;
}

export interface FileReplayStoreDeps extends MemoryReplayStoreDeps {
  file: string;
  /** Told when persisting fails; the claim is then refused as 'full' and the jti is not recorded. */
  onError?: (err: unknown) => void;
}

const Entries = z.array(z.tuple([z.string().min(1).max(64), z.number().int().nonnegative()]));
const ReplayFileSchema = z.union([
  z.strictObject({
    v: z.literal(2),
    lastGoodTime: z.number().int().nonnegative().nullable(),
    entries: Entries,
  }),
  // Version 1 files (before the last good time was kept) still load, with no last good time.
  z
    .strictObject({ v: z.literal(1), entries: Entries })
    .transform((f) => ({ v: 2 as const, lastGoodTime: null, entries: f.entries })),
]);
type ReplayFile = z.infer<typeof ReplayFileSchema>;

const emptyFile = (): ReplayFile => ({ v: 2, lastGoodTime: null, entries: [] });

/**
 * Entries are pruned by the last known good time, never by the raw clock: a clock moved forward and back again
 * must not make the car forget a jti whose token is still within its validity at the time it reads afterwards.
 */
function unexpired(file: ReplayFile, floor: number | null): Map<string, number> {
  const entries = new Map(file.entries);
  if (floor !== null) for (const [jti, expMs] of entries) if (expMs <= floor) entries.delete(jti);
  return entries;
}

function createStore(capacity: number, cell: Cell<ReplayFile>): ReplayStore {
  return {
    claim(jti, expMs, nowMs) {
      const current = cell.read();
      const floor = Math.max(current.lastGoodTime ?? nowMs, nowMs);
      const entries = unexpired(current, floor);
      if (entries.has(jti)) return 'replayed';
      if (entries.size >= capacity) return 'full';
      entries.set(jti, expMs);
      try {
        cell.write({ v: 2, lastGoodTime: floor, entries: [...entries] });
      } catch {
        // A jti that is not on disk would be forgotten by a restart, so the claim fails closed.
        return 'full';
      }
      return 'ok';
    },
    size() {
      const current = cell.read();
      return unexpired(current, current.lastGoodTime).size;
    },
    lastGoodTime: () => cell.read().lastGoodTime,
  };
}

/** In-memory replay guard, for unit tests; forgets everything when the process ends. */
export function createMemoryReplayStore(deps: MemoryReplayStoreDeps): ReplayStore {
  return createStore(deps.capacity, memoryCell(emptyFile()));
}

/**
 * Replay guard persisted to a JSON file, rewritten on every claim, so a restarted car still refuses tokens it
 * already used and still knows its last good time. An unreadable file throws SIM_REPLAY_STORE_CORRUPT at creation.
 */
export function createFileReplayStore(deps: FileReplayStoreDeps): ReplayStore {
  return createStore(
    deps.capacity,
    fileCell({
      file: deps.file,
      schema: ReplayFileSchema,
      initial: emptyFile,
      corruptCode: 'SIM_REPLAY_STORE_CORRUPT',
      onError: deps.onError,
    }),
  );
}

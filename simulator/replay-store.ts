// Owns the car's single-use memory of token ids (jti): bounded, pruned by expiry, optionally persisted to a file.
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { ReplayGuard } from '../protocols/token.ts';
import { SimulatorError } from './errors.ts';

export interface ReplayStore extends ReplayGuard {
  /** Number of remembered jti values that have not expired (entries are pruned first). */
  size(): number;
}

export interface MemoryReplayStoreDeps {
  /** Most jti values remembered at once; beyond it claims answer 'full' (fail closed). */
  capacity: number;
  /** The car's time in ms; null when unknown, in which case nothing is pruned. */
  now: () => number | null;
}

export interface FileReplayStoreDeps extends MemoryReplayStoreDeps {
  file: string;
  /** Told when persisting fails; the claim is then refused as 'full' and the jti is not recorded. */
  onError?: (err: unknown) => void;
}

const ReplayFileSchema = z.strictObject({
  v: z.literal(1),
  entries: z.array(z.tuple([z.string().min(1).max(64), z.number().int().nonnegative()])),
});
type ReplayFile = z.infer<typeof ReplayFileSchema>;

function createStore(
  deps: MemoryReplayStoreDeps,
  entries: Map<string, number>,
  persist: (entries: ReadonlyMap<string, number>) => void,
): ReplayStore {
  const prune = (): void => {
    const now = deps.now();
    // Without a known time nothing can be shown to have expired, so everything is kept (fail closed).
    if (now === null) return;
    for (const [jti, expMs] of entries) if (expMs <= now) entries.delete(jti);
  };
  return {
    claim(jti, expMs) {
      prune();
      if (entries.has(jti)) return 'replayed';
      if (entries.size >= deps.capacity) return 'full';
      entries.set(jti, expMs);
      try {
        persist(entries);
      } catch {
        // A jti that is not on disk would be forgotten by a restart, so the claim fails closed.
        entries.delete(jti);
        return 'full';
      }
      return 'ok';
    },
    size() {
      prune();
      return entries.size;
    },
  };
}

/** In-memory replay guard, for unit tests; forgets everything when the process ends. */
export function createMemoryReplayStore(deps: MemoryReplayStoreDeps): ReplayStore {
  return createStore(deps, new Map(), () => {});
}

function readReplayFile(file: string): Map<string, number> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  let parsed: ReplayFile;
  try {
    parsed = ReplayFileSchema.parse(JSON.parse(text));
  } catch (err) {
    // Starting empty would forget used tokens and let them replay, so a damaged file stops the car instead.
    throw new SimulatorError('SIM_REPLAY_STORE_CORRUPT', `replay store ${file} is not readable`, {
      cause: err,
    });
  }
  return new Map(parsed.entries);
}

/** Writes through a temporary file and a rename, so a crash leaves either the old or the new file whole. */
export function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    fchmodSync(fd, 0o600); // openSync's mode only applies when it creates the file
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/**
 * Replay guard persisted to a JSON file, rewritten on every claim, so a restarted simulator still refuses
 * tokens it already used. An unreadable file throws SIM_REPLAY_STORE_CORRUPT at creation.
 */
export function createFileReplayStore(deps: FileReplayStoreDeps): ReplayStore {
  mkdirSync(dirname(deps.file), { recursive: true, mode: 0o700 });
  const entries = readReplayFile(deps.file);
  return createStore(deps, entries, (current) => {
    const body: ReplayFile = { v: 1, entries: [...current] };
    try {
      writeAtomically(deps.file, JSON.stringify(body));
    } catch (err) {
      deps.onError?.(err);
      throw err;
    }
  });
}

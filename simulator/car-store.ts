// Owns the car's memory of its own state across a reboot: lock, relock deadline, openings, position, in a file.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { DoorsSchema, PositionSchema } from '../protocols/messages.ts';
import type { CarState } from './car-state.ts';
import { SimulatorError } from './errors.ts';
import { writeAtomically } from './state-file.ts';

const CarFileSchema = z.strictObject({
  v: z.literal(1),
  locked: z.boolean(),
  relockDeadline: z.number().int().nullable(),
  doors: DoorsSchema,
  trunk: z.enum(['open', 'closed']),
  ignition: z.enum(['off', 'on']),
  position: PositionSchema,
  seq: z.number().int().nonnegative(),
});
type CarFile = z.infer<typeof CarFileSchema>;

export interface CarStore {
  /** The state saved before the last reboot, offline and with `seq` at least `minSeq`; null on first boot. */
  load(minSeq: number): CarState | null;
  save(state: CarState): void;
}

/**
 * A car's state in one JSON file, rewritten atomically on every change. An unlocked car that reboots is still
 * unlocked afterwards, with the same fail-safe deadline: a reboot must not forget to relock. A damaged file
 * throws SIM_CAR_STATE_CORRUPT rather than booting as a factory-fresh (locked) car, which would hide it.
 */
export function createFileCarStore(file: string, onError?: (err: unknown) => void): CarStore {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  return {
    load(minSeq) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
      let saved: CarFile;
      try {
        saved = CarFileSchema.parse(JSON.parse(text));
      } catch (err) {
        throw new SimulatorError('SIM_CAR_STATE_CORRUPT', `car state ${file} is not readable`, {
          cause: err,
        });
      }
      return {
        locked: saved.locked,
        relockDeadline: saved.relockDeadline,
        doors: saved.doors,
        trunk: saved.trunk,
        ignition: saved.ignition,
        position: saved.position,
        online: false,
        seq: Math.max(saved.seq, minSeq),
      };
    },
    save(state) {
      const body: CarFile = {
        v: 1,
        locked: state.locked,
        relockDeadline: state.relockDeadline,
        doors: { ...state.doors },
        trunk: state.trunk,
        ignition: state.ignition,
        position: { lat: state.position.lat, lon: state.position.lon },
        seq: state.seq,
      };
      try {
        writeAtomically(file, JSON.stringify(body));
      } catch (err) {
        onError?.(err);
      }
    },
  };
}

/**
 * A car's state in memory only, for the life of the process: a reboot (Fleet.reboot) keeps it, an exit forgets
 * it. For the bench, where the file's fsync per change would make the simulator the thing measured.
 */
export function createMemoryCarStore(): CarStore {
  let saved: CarState | null = null;
  return {
    load: (minSeq) => (saved ? { ...saved, online: false, seq: Math.max(saved.seq, minSeq) } : null),
    save(state) {
      saved = { ...state, doors: { ...state.doors }, position: { ...state.position } };
    },
  };
}

// Owns the car's memory of what it did with recent commands, kept across reboots, to answer state queries (§3.5).
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { type Ack, type CommandOutcome, CommandOutcomeSchema } from '../protocols/messages.ts';
import { SimulatorError } from './errors.ts';
import { writeAtomically } from './state-file.ts';

/** How many command outcomes a car remembers; PROTOCOL.md §3.5 asks for at least 64. */
export const DEFAULT_OUTCOME_CAPACITY = 64;

export interface OutcomeMemory {
  /** Notes the outcome of an ack the car sends; the first outcome for a command id is the one kept. */
  record(ack: Ack): void;
  /** The remembered outcomes of these commands, in the order asked; unknown ids are left out. */
  lookup(commandIds: readonly string[]): CommandOutcome[];
}

export interface OutcomeMemoryDeps {
  capacity?: number;
  /** Persists to this file (rewritten atomically on every new outcome); absent, memory only. */
  file?: string;
  onError?: (err: unknown) => void;
}

const OutcomeFileSchema = z.strictObject({ v: z.literal(1), outcomes: z.array(CommandOutcomeSchema) });

function load(file: string): CommandOutcome[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    return OutcomeFileSchema.parse(JSON.parse(text)).outcomes;
  } catch (err) {
    throw new SimulatorError('SIM_CAR_STATE_CORRUPT', `command outcomes ${file} are not readable`, {
      cause: err,
    });
  }
}

export function createOutcomeMemory(deps: OutcomeMemoryDeps = {}): OutcomeMemory {
  const capacity = deps.capacity ?? DEFAULT_OUTCOME_CAPACITY;
  const { file } = deps;
  if (file) mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const outcomes = new Map<string, CommandOutcome>((file ? load(file) : []).map((o) => [o.commandId, o]));
  return {
    record(ack) {
      // A re-sent ack (QoS duplicate) or a later refusal of the same id (TOKEN_REPLAYED) keeps the first.
      if (outcomes.has(ack.commandId)) return;
      outcomes.set(ack.commandId, {
        commandId: ack.commandId,
        outcome: ack.outcome,
        ...(ack.reason !== undefined && { reason: ack.reason }),
      });
      while (outcomes.size > capacity) {
        const oldest = outcomes.keys().next().value;
        if (oldest === undefined) break;
        outcomes.delete(oldest);
      }
      if (!file) return;
      try {
        writeAtomically(file, JSON.stringify({ v: 1, outcomes: [...outcomes.values()] }));
      } catch (err) {
        deps.onError?.(err);
      }
    },
    lookup(commandIds) {
      return commandIds.flatMap((id) => {
        const known = outcomes.get(id);
        return known ? [known] : [];
      });
    },
  };
}

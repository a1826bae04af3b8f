// Owns the car's memory of what it did with recent commands, kept across reboots, to answer state queries (§3.5).
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { type Ack, type CommandOutcome, CommandOutcomeSchema } from '../protocols/messages.ts';
import { SimulatorError } from './errors.ts';
import type { CarRefusalCode } from './refusal-codes.ts';
import { writeAtomically } from './state-file.ts';

/** How many command outcomes a car remembers; PROTOCOL.md §3.5 asks for at least 64. */
export const DEFAULT_OUTCOME_CAPACITY = 64;

const DISOWNED: CarRefusalCode = 'COMMAND_DISOWNED';

export interface OutcomeMemory {
  /** Notes the outcome of an ack the car sends; the first outcome for a command id is the one kept. */
  record(ack: Ack): void;
  /** The remembered outcomes of these commands, in the order asked; unknown ids are left out. */
  lookup(commandIds: readonly string[]): CommandOutcome[];
  /**
   * Answers a state query naming these commands: the outcomes it can report, and from then on every id it could
   * not (the command has not reached the car) is disowned, so that the car refuses it should it still arrive
   * (PROTOCOL.md §3.5). Kept like an outcome: refused, COMMAND_DISOWNED.
   */
  answer(commandIds: readonly string[]): CommandOutcome[];
  /** Whether a state query was answered without this command, which must then be refused. */
  disowned(commandId: string): boolean;
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
  const keep = (outcome: CommandOutcome): void => {
    outcomes.set(outcome.commandId, outcome);
    while (outcomes.size > capacity) {
      const oldest = outcomes.keys().next().value;
      if (oldest === undefined) break;
      outcomes.delete(oldest);
    }
  };
  const persist = (): void => {
    if (!file) return;
    try {
      writeAtomically(file, JSON.stringify({ v: 1, outcomes: [...outcomes.values()] }));
    } catch (err) {
      deps.onError?.(err);
    }
  };
  const lookup = (commandIds: readonly string[]): CommandOutcome[] =>
    commandIds.flatMap((id) => {
      const known = outcomes.get(id);
      return known ? [known] : [];
    });
  return {
    record(ack) {
      // A re-sent ack (QoS duplicate) or a later refusal of the same id (TOKEN_REPLAYED) keeps the first.
      if (outcomes.has(ack.commandId)) return;
      keep({
        commandId: ack.commandId,
        outcome: ack.outcome,
        ...(ack.reason !== undefined && { reason: ack.reason }),
      });
      persist();
    },
    lookup,
    answer(commandIds) {
      const known = lookup(commandIds);
      const unseen = commandIds.filter((id) => !outcomes.has(id));
      for (const commandId of unseen) keep({ commandId, outcome: 'refused', reason: DISOWNED });
      if (unseen.length > 0) persist();
      return known;
    },
    disowned: (commandId) => outcomes.get(commandId)?.reason === DISOWNED,
  };
}

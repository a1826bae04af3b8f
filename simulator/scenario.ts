// Owns the fault scenario file: its schema (seed, fault plan, timed steps), loading it, and playing its steps.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Vin } from '../protocols/messages.ts';
import { SimulatorError } from './errors.ts';
import type { FleetFaults } from './faults.ts';
import { FleetFaultPlanSchema } from './faults.ts';
import type { Fleet } from './fleet.ts';
import { asFleetControl, type FleetControl } from './fleet-control.ts';
import { OperationSchema } from './operations.ts';
import type { Logger } from './transport.ts';

const StepHeader = z.object({
  /** When to apply the step, in ms after the fleet is up. */
  atMs: z.number().int().min(0).max(86_400_000),
  /** The car; absent means every car. */
  vin: Vin.optional(),
});

/** A step is an operation (simulator/operations.ts) with `atMs` and an optional `vin` beside its `op`. */
export const ScenarioStepSchema = z.looseObject(StepHeader.shape).transform((raw, ctx) => {
  const { atMs, vin, ...rest } = raw;
  const op = OperationSchema.safeParse(rest);
  if (!op.success) {
    for (const issue of op.error.issues) ctx.addIssue({ ...issue, code: 'custom', message: issue.message });
    return z.NEVER;
  }
  return { atMs, vin, op: op.data };
});
export type ScenarioStep = z.infer<typeof ScenarioStepSchema>;

export const ScenarioSchema = z.strictObject({
  /** Seeds every random fault; `--seed` on the command line overrides it. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  faults: FleetFaultPlanSchema.optional(),
  steps: z.array(ScenarioStepSchema).max(10_000).optional(),
});
export type Scenario = z.infer<typeof ScenarioSchema>;

/** Parses a scenario document; the error names the first bad field by its path. */
export function parseScenario(json: unknown, source = 'scenario'): Scenario {
  const parsed = ScenarioSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? issue.path.join('.') : '(root)';
  throw new SimulatorError('SIM_SCENARIO_INVALID', `${source}: ${where}: ${issue?.message ?? 'invalid'}`);
}

export function loadScenario(file: string): Scenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new SimulatorError('SIM_SCENARIO_INVALID', `${file}: ${why}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SimulatorError('SIM_SCENARIO_INVALID', `${file}: not JSON`);
  }
  return parseScenario(json, file);
}

export interface ScenarioRun {
  /** Resolves when every step has been applied (a failed step is logged and does not stop the others). */
  done: Promise<void>;
  cancel(): void;
}

/** Plays the steps against a running fleet (in this thread or across workers); same-atMs steps run in file order. */
export function playScenario(
  fleet: Fleet | FleetControl,
  steps: readonly ScenarioStep[],
  logger?: Logger,
  faults: FleetFaults | null = null,
): ScenarioRun {
  const control = asFleetControl(fleet, faults);
  const timers: NodeJS.Timeout[] = [];
  const pending = new Set<() => void>();
  const ordered = steps
    .map((step, i) => ({ step, i }))
    .sort((a, b) => a.step.atMs - b.step.atMs || a.i - b.i);
  let chain: Promise<void> = Promise.resolve();
  let cancelled = false;
  const apply = async (step: ScenarioStep, i: number): Promise<void> => {
    if (cancelled) return;
    try {
      const applied = await control.apply(step.vin, step.op);
      logger?.info({ step: i, atMs: step.atMs, op: step.op.op, cars: applied.length }, 'scenario step');
    } catch (err) {
      logger?.error({ step: i, op: step.op.op, err: String(err) }, 'scenario step failed');
    }
  };
  const runs = ordered.map(
    ({ step, i }) =>
      new Promise<void>((resolve) => {
        pending.add(resolve);
        timers.push(
          setTimeout(() => {
            // Steps apply one after another, so a reboot finishes before the next step touches that car.
            chain = chain.then(() => apply(step, i));
            chain.then(() => {
              pending.delete(resolve);
              resolve();
            });
          }, step.atMs),
        );
      }),
  );
  return {
    done: Promise.all(runs).then(() => undefined),
    cancel() {
      cancelled = true;
      for (const t of timers) clearTimeout(t);
      for (const resolve of pending) resolve();
      pending.clear();
    },
  };
}

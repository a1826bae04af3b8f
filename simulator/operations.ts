// Owns the operations a person or a scenario performs on simulated cars: one schema, one way to apply them.
import { z } from 'zod';
import { DoorsSchema, PositionSchema } from '../protocols/messages.ts';
import { SimulatorError } from './errors.ts';
import { BatterySchema, type CarFaults, FaultPlanSchema, LinkModeSchema } from './faults.ts';
import type { Fleet, FleetCar } from './fleet.ts';

const Latch = z.enum(['open', 'closed']);

/** One operation on one car; the control API and scenario steps both carry exactly these. */
export const OperationSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('door'), door: DoorsSchema.keyof(), to: Latch }),
  z.strictObject({ op: z.literal('trunk'), to: Latch }),
  z.strictObject({ op: z.literal('ignition'), to: z.enum(['on', 'off']) }),
  z.strictObject({ op: z.literal('move'), ...PositionSchema.shape }),
  /** online | asleep | offline | no_signal (simulator/faults.ts LinkMode). */
  z.strictObject({ op: z.literal('link'), mode: LinkModeSchema }),
  /** Any of: jump the clock by jumpMs (either sign), set its drift, lose or regain the time. */
  z.strictObject({
    op: z.literal('clock'),
    jumpMs: z.number().int().min(-31_536_000_000).max(31_536_000_000).optional(),
    driftPpm: z.number().min(-500_000).max(500_000).optional(),
    known: z.boolean().optional(),
  }),
  z.strictObject({ op: z.literal('battery'), level: BatterySchema }),
  z.strictObject({ op: z.literal('reboot'), downMs: z.number().int().min(0).max(600_000).default(1_000) }),
  /** Replaces message faults and sleep settings for this car from now on. */
  z.strictObject({
    op: z.literal('faults'),
    ...FaultPlanSchema.pick({
      commands: true,
      acks: true,
      state: true,
      wakeLatencyMs: true,
      sleepAfterMs: true,
    }).shape,
  }),
  /** Sends a state report now. */
  z.strictObject({ op: z.literal('report') }),
]);
export type Operation = z.infer<typeof OperationSchema>;

function faultsOf(entry: FleetCar): CarFaults {
  if (!entry.faults) {
    throw new SimulatorError('SIM_CONTROL_FAILED', `${entry.vehicle.vin} runs without fault injection`);
  }
  return entry.faults;
}

/** Applies one operation to one car; resolves when it has taken effect (a reboot: when the car is back). */
export async function applyOperation(fleet: Fleet, vin: string, op: Operation): Promise<void> {
  const entry = fleet.car(vin);
  const { car } = entry;
  switch (op.op) {
    case 'door':
      if (op.to === 'open') car.openDoor(op.door);
      else car.closeDoor(op.door);
      return;
    case 'trunk':
      car.setTrunk(op.to);
      return;
    case 'ignition':
      car.setIgnition(op.to);
      return;
    case 'move':
      car.moveTo({ lat: op.lat, lon: op.lon });
      entry.faults?.note('moved', { lat: op.lat, lon: op.lon });
      return;
    case 'link':
      faultsOf(entry).setLink(op.mode);
      return;
    case 'clock': {
      const faults = faultsOf(entry);
      if (op.known !== undefined) faults.setClockKnown(op.known);
      if (op.driftPpm !== undefined) faults.setDrift(op.driftPpm);
      if (op.jumpMs !== undefined) faults.jumpClock(op.jumpMs);
      return;
    }
    case 'battery':
      faultsOf(entry).setBattery(op.level);
      return;
    case 'reboot':
      await fleet.reboot(vin, op.downMs);
      return;
    case 'faults': {
      const { op: _op, ...plan } = op;
      faultsOf(entry).updatePlan(plan);
      return;
    }
    case 'report':
      entry.connection.reportState();
      return;
  }
}

/** Applies an operation to one car, or to every car when vin is undefined. */
export async function applyToFleet(fleet: Fleet, vin: string | undefined, op: Operation): Promise<string[]> {
  const vins = vin === undefined ? [...fleet.cars.keys()] : [fleet.car(vin).vehicle.vin];
  await Promise.all(vins.map((v) => applyOperation(fleet, v, op)));
  return vins;
}

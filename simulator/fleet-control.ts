// Owns the fleet as the ones who drive it see it (control API, scenarios): views of cars and operations on
// them, asynchronous, the same whether the cars run in this thread or across worker threads.
import type { FaultEvent, FaultKind, FleetFaults } from './faults.ts';
import type { Fleet, FleetCar } from './fleet.ts';
import { applyToFleet, type Operation } from './operations.ts';

/** What the control API shows of one car. */
export function carView(entry: FleetCar) {
  const s = entry.car.snapshot();
  return {
    vin: entry.vehicle.vin,
    make: entry.car.make,
    model: entry.car.model,
    year: entry.car.year,
    provider: entry.car.provider,
    connected: entry.connection.connected,
    state: {
      locked: s.locked,
      relockDeadline: s.relockDeadline,
      doors: s.doors,
      trunk: s.trunk,
      ignition: s.ignition,
      position: s.position,
    },
    faults: entry.faults?.status() ?? null,
    flaws: entry.flaws,
    executedCommands: entry.executed.length,
  };
}
export type CarView = ReturnType<typeof carView>;

export type FaultCounts = Partial<Record<FaultKind, number>>;

/** The seed, the fleet's fault counts and each car's fault trace (cars that never had an injector are absent). */
export interface FaultReport {
  seed: number | null;
  counts: FaultCounts;
  cars: Record<string, { counts: FaultCounts; trace: readonly FaultEvent[] }>;
}

export interface FleetControl {
  /** Every simulated VIN, in the order the fleet was given them. */
  vins(): readonly string[];
  has(vin: string): boolean;
  /** Throws SIM_UNKNOWN_VIN for a car the fleet does not simulate. */
  view(vin: string): Promise<CarView>;
  views(): Promise<CarView[]>;
  /** Applies op to one car, or to every car when vin is undefined; resolves with the VINs it applied to. */
  apply(vin: string | undefined, op: Operation): Promise<string[]>;
  faultReport(): Promise<FaultReport>;
}

/** Sums per-car fault counts. */
export function sumCounts(all: Iterable<FaultCounts>): FaultCounts {
  const total: FaultCounts = {};
  for (const counts of all) {
    for (const [kind, n] of Object.entries(counts) as Array<[FaultKind, number]>) {
      total[kind] = (total[kind] ?? 0) + n;
    }
  }
  return total;
}

/** The fault report of the cars in this thread. */
export function localFaultReport(faults: FleetFaults | null): FaultReport {
  const cars: FaultReport['cars'] = {};
  for (const f of faults?.cars().values() ?? []) cars[f.vin] = { counts: f.counts(), trace: f.trace() };
  return { seed: faults?.seed ?? null, counts: faults?.counts() ?? {}, cars };
}

/** The control of a fleet whose cars run in this thread. */
export function localFleetControl(fleet: Fleet, faults: FleetFaults | null): FleetControl {
  return {
    vins: () => [...fleet.cars.keys()],
    has: (vin) => fleet.cars.has(vin),
    view: async (vin) => carView(fleet.car(vin)),
    views: async () => [...fleet.cars.values()].map(carView),
    apply: (vin, op) => applyToFleet(fleet, vin, op),
    faultReport: async () => localFaultReport(faults),
  };
}

/** A fleet of this thread becomes a FleetControl; a FleetControl stays itself. */
export function asFleetControl(fleet: Fleet | FleetControl, faults: FleetFaults | null): FleetControl {
  return 'apply' in fleet ? fleet : localFleetControl(fleet, faults);
}

// Owns linking vehicles against the compatibility catalog, owners' locations, and what cars last reported.
import type { Kysely } from 'kysely';
import {
  type Catalog,
  entryForMake,
  findCompatible,
  type StateMessage,
  vinAgreesWithWmi,
  vinAgreesWithYear,
  vinProblem,
} from '../protocols/index.ts';
import { ApiError } from './errors.ts';
import {
  findVehicle,
  insertLocation,
  insertVehicle,
  type LocationRecord,
  listVehicles,
  recordVehicleState,
  type VehicleRecord,
} from './store/records.ts';
import type { Database } from './store/schema.ts';

/** The only actions an owner grants at linking (the service's promise: unlock and re-lock, nothing else). */
export const CONSENTED_ACTIONS = ['unlock', 'lock'] as const;

export interface LinkInput {
  vin: string;
  make: string;
  model: string;
  year: number;
  provider: string;
  ownerId: string;
}

export interface LocationInput {
  ownerId: string;
  label: string;
  kind: 'home' | 'workplace' | 'store';
  lat: number;
  lon: number;
  radiusM: number;
}

export interface VehicleServiceDeps {
  db: Kysely<Database>;
  catalog: Catalog;
  now: () => number;
  newId: () => string;
  maxRadiusM: number;
}

export function createVehicleService(deps: VehicleServiceDeps) {
  const { db, now } = deps;

  async function link(input: LinkInput): Promise<VehicleRecord> {
    const problem = vinProblem(input.vin);
    if (problem) throw new ApiError(problem);
    if (!vinAgreesWithYear(input.vin, input.year)) {
      throw new ApiError('VIN_YEAR_MISMATCH', {
        detail: `VIN position 10 is '${input.vin[9]}', which is not model year ${input.year}`,
      });
    }
    const entry = entryForMake(deps.catalog, input.make);
    if (entry && !vinAgreesWithWmi(input.vin, entry.wmi)) {
      throw new ApiError('VIN_MAKE_MISMATCH', {
        detail: `VIN prefix ${input.vin.slice(0, 3)} is not ${entry.make} (${entry.wmi.join(', ')})`,
      });
    }
    if (!entry || !findCompatible(deps.catalog, input)) {
      throw new ApiError('VEHICLE_NOT_COMPATIBLE', {
        detail: `${input.year} ${input.make} with ${input.provider} is not supported: 2015 and newer Chevrolet, Buick, GMC or Cadillac with onstar, or Volvo with volvo-on-call`,
      });
    }
    if (await findVehicle(db, input.vin)) throw new ApiError('VEHICLE_ALREADY_LINKED');
    await insertVehicle(db, { ...input, consent: [...CONSENTED_ACTIONS], linkedAt: now() });
    return (await findVehicle(db, input.vin)) as VehicleRecord;
  }

  async function get(vin: string): Promise<VehicleRecord> {
    const v = await findVehicle(db, vin);
    if (!v) throw new ApiError('NOT_FOUND', { detail: `no linked vehicle ${vin}` });
    return v;
  }

  async function addLocation(input: LocationInput): Promise<LocationRecord> {
    if (input.radiusM > deps.maxRadiusM) {
      throw new ApiError('RADIUS_TOO_LARGE', { detail: `radiusM at most ${deps.maxRadiusM}` });
    }
    const location: LocationRecord = { id: `loc_${deps.newId()}`, ...input, createdAt: now() };
    await insertLocation(db, location);
    return location;
  }

  /** Applies a state or presence message from a car; unlinked cars are ignored. */
  async function observe(vin: string, message: StateMessage): Promise<void> {
    if (message.type === 'presence') {
      await recordVehicleState(db, vin, { online: false, seenAt: now() });
      return;
    }
    const doorsOpen = Object.values(message.doors).some((d) => d === 'open') || message.trunk === 'open';
    await recordVehicleState(db, vin, {
      online: true,
      locked: message.locked,
      position: message.position,
      ignition: message.ignition,
      doorsOpen,
      seenAt: now(),
      seq: message.seq,
    });
  }

  return { link, get, list: () => listVehicles(db), addLocation, observe };
}

export type VehicleService = ReturnType<typeof createVehicleService>;

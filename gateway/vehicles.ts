// Owns linking vehicles against the compatibility catalog, owners' locations, and what cars last reported.
import type { Kysely } from 'kysely';
import { type Catalog, findCompatible, type StateMessage, vinProblem } from '../protocols/index.ts';
import { ApiError } from './errors.ts';
import type { Write } from './store/group-commit.ts';
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
  /** For reads. */
  db: Kysely<Database>;
  /** Every write goes through here: atomic per unit, durable before it resolves (store.write). */
  write: Write;
  catalog: Catalog;
  now: () => number;
  newId: () => string;
  maxRadiusM: number;
}

export function createVehicleService(deps: VehicleServiceDeps) {
  const { db, write, now } = deps;

  async function link(input: LinkInput): Promise<VehicleRecord> {
    const problem = vinProblem(input.vin);
    if (problem) throw new ApiError(problem);
    if (!findCompatible(deps.catalog, input)) {
      throw new ApiError('VEHICLE_NOT_COMPATIBLE', {
        detail: `${input.year} ${input.make} with ${input.provider} is not supported: 2015 and newer Chevrolet, Buick, GMC or Cadillac with onstar, or Volvo with volvo-on-call`,
      });
    }
    if (await findVehicle(db, input.vin)) throw new ApiError('VEHICLE_ALREADY_LINKED');
    await write((trx) => insertVehicle(trx, { ...input, consent: [...CONSENTED_ACTIONS], linkedAt: now() }));
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
    await write((trx) => insertLocation(trx, location));
    return location;
  }

  /** Applies a state or presence message from a car; unlinked cars are ignored. */
  async function observe(vin: string, message: StateMessage): Promise<void> {
    if (message.type === 'presence') {
      await write((trx) => recordVehicleState(trx, vin, { online: false, seenAt: now() }));
      return;
    }
    const doorsOpen = Object.values(message.doors).some((d) => d === 'open') || message.trunk === 'open';
    const seenAt = now();
    await write((trx) =>
      recordVehicleState(trx, vin, {
        online: true,
        locked: message.locked,
        position: message.position,
        ignition: message.ignition,
        doorsOpen,
        seenAt,
        seq: message.seq,
      }),
    );
  }

  return { link, get, list: () => listVehicles(db), addLocation, observe };
}

export type VehicleService = ReturnType<typeof createVehicleService>;

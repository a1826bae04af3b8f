// Owns linking vehicles against the compatibility catalog, owners' locations, and what cars last reported.
import type { Kysely } from 'kysely';
import { type Catalog, findCompatible, type StateMessage, vinProblem } from '../protocols/index.ts';
import { ApiError } from './errors.ts';
import { appendAudit, withinTransaction } from './store/audit.ts';
import {
  findVehicle,
  insertLocation,
  insertVehicle,
  type LocationRecord,
  listVehicles,
  listVehiclesWithoutCertificate,
  pinVehicleCertificateIfMissing,
  recordVehicleState,
  type VehicleRecord,
} from './store/records.ts';
import type { Database } from './store/schema.ts';
import type { PinnedCertificate } from './vehicle-certs.ts';

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
  /** The CA-issued certificate for a VIN, checked (vehicle-certs.ts): pinned at link time for its signed acks. */
  certificateFor: (vin: string, now: number) => PinnedCertificate;
}

export function createVehicleService(deps: VehicleServiceDeps) {
  const { db, now } = deps;

  async function link(input: LinkInput): Promise<VehicleRecord> {
    const problem = vinProblem(input.vin);
    if (problem) throw new ApiError(problem);
    if (!findCompatible(deps.catalog, input)) {
      throw new ApiError('VEHICLE_NOT_COMPATIBLE', {
        detail: `${input.year} ${input.make} with ${input.provider} is not supported: 2015 and newer Chevrolet, Buick, GMC or Cadillac with onstar, or Volvo with volvo-on-call`,
      });
    }
    if (await findVehicle(db, input.vin)) throw new ApiError('VEHICLE_ALREADY_LINKED');
    const linkedAt = now();
    // TOKEN.md §9.3: the certificate is pinned now, so every later ack is checked against this one.
    const pinned = deps.certificateFor(input.vin, linkedAt);
    if (!pinned.ok)
      throw new ApiError('VEHICLE_NOT_ENROLLED', { detail: `${pinned.problem} for ${input.vin}` });
    await withinTransaction(db, async (trx) => {
      await insertVehicle(trx, {
        ...input,
        consent: [...CONSENTED_ACTIONS],
        linkedAt,
        certPem: pinned.certificate.toString(),
      });
      // The owner's consent is where every later unlock's authority starts.
      await appendAudit(trx, {
        at: linkedAt,
        kind: 'vehicle_linked',
        outcome: 'granted',
        code: null,
        deliveryId: null,
        detail: {
          vin: input.vin,
          ownerId: input.ownerId,
          provider: input.provider,
          consent: [...CONSENTED_ACTIONS],
        },
      });
    });
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
    await withinTransaction(db, async (trx) => {
      await insertLocation(trx, location);
      await appendAudit(trx, {
        at: location.createdAt,
        kind: 'location_registered',
        outcome: 'info',
        code: null,
        deliveryId: null,
        detail: {
          locationId: location.id,
          ownerId: location.ownerId,
          lat: location.lat,
          lon: location.lon,
          radiusM: location.radiusM,
        },
      });
    });
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

  /**
   * Pins certificates for vehicles linked before acks were signed (migration 0002), with the same checks as at link
   * time; run at start. A vehicle whose certificate cannot be pinned keeps none, and its acks are refused.
   */
  async function pinMissingCertificates(): Promise<{ pinned: string[]; unpinned: string[] }> {
    const pinned: string[] = [];
    const unpinned: string[] = [];
    for (const vin of await listVehiclesWithoutCertificate(db)) {
      const cert = deps.certificateFor(vin, now());
      if (cert.ok) {
        await pinVehicleCertificateIfMissing(db, vin, cert.certificate.toString());
        pinned.push(vin);
      } else {
        unpinned.push(vin);
      }
    }
    return { pinned, unpinned };
  }

  return { link, get, list: () => listVehicles(db), addLocation, observe, pinMissingCertificates };
}

export type VehicleService = ReturnType<typeof createVehicleService>;

// Owns linking vehicles against the compatibility catalog, owners' locations, and what cars last reported.
import type { Kysely } from 'kysely';
import {
  type Catalog,
  entryForMake,
  findCompatible,
  modelYearOf,
  type StateMessage,
  vinAgreesWithWmi,
  vinAgreesWithYear,
  vinProblem,
} from '../../protocols/index.ts';
import { ApiError } from '../errors.ts';
import { queueAudit } from '../store/audit.ts';
import type { Write } from '../store/group-commit.ts';
import { insertLocation, type LocationRecord } from '../store/locations.ts';
import type { Database } from '../store/schema.ts';
import {
  findVehicle,
  insertVehicle,
  listVehicles,
  listVehiclesWithoutCertificate,
  markVehicleOffline,
  pinVehicleCertificateIfMissing,
  type ReportedState,
  recordVehicleState,
  relinkVehicle,
  reportChanges,
  type VehicleRecord,
} from '../store/vehicles.ts';
import type { PinnedCertificate } from './certificates.ts';

/** The only actions an owner grants at linking (the service's promise: unlock and re-lock, nothing else). */
export const CONSENTED_ACTIONS = ['unlock', 'lock'] as const;

export interface LinkInput {
  vin: string;
  make: string;
  model: string;
  year: number;
  provider: string;
  ownerId: string;
  /**
   * What the owner consents to: required, and exactly unlock and lock. Optional in the type only so that a request
   * without it reaches link() and is refused with CONSENT_INVALID, never linked on an assumed consent.
   */
  consent?: string[];
}

export interface LocationInput {
  ownerId: string;
  label: string;
  kind: 'home' | 'workplace' | 'store';
  /** Only a publicly accessible place is accepted: no multi-level garage, no gated or restricted area. */
  access: 'public' | 'garage' | 'restricted';
  lat: number;
  lon: number;
  radiusM: number;
}

/** Exactly unlock and lock, each once, in any order. */
function isExactConsent(consent: readonly string[]): boolean {
  return consent.length === CONSENTED_ACTIONS.length && CONSENTED_ACTIONS.every((a) => consent.includes(a));
}

/** How far lastSeen may lag the car's last report when its reports change nothing (store/vehicles.ts). */
export const DEFAULT_LAST_SEEN_RESOLUTION_MS = 10_000;

export interface VehicleServiceDeps {
  /** How far lastSeen may lag a car's last report that changed nothing; DEFAULT_LAST_SEEN_RESOLUTION_MS. */
  lastSeenResolutionMs?: number;
  /** For reads. */
  db: Kysely<Database>;
  /** Writes go through here (store.write): atomic per unit, durable before it resolves, commits shared. */
  write: Write;
  catalog: Catalog;
  now: () => number;
  newId: () => string;
  maxRadiusM: number;
  /** The CA-issued certificate for a VIN, checked (vehicle-certs.ts): pinned at link time for its signed acks. */
  certificateFor: (vin: string, now: number) => PinnedCertificate;
  /** Whether the VIN's certificate is on the CRL (revocation.ts); never revoked without it. */
  certificateRevoked?: (vin: string) => Promise<boolean>;
}

/** A linked vehicle as the API shows it: a car whose certificate is revoked is offline, whatever it reported last. */
export interface VehicleState extends VehicleRecord {
  revoked: boolean;
}

export function createVehicleService(deps: VehicleServiceDeps) {
  const { db, write, now } = deps;
  const lastSeenResolutionMs = deps.lastSeenResolutionMs ?? DEFAULT_LAST_SEEN_RESOLUTION_MS;
  /** Cars whose state report this process has written at least once. */
  const reported = new Set<string>();

  async function stateOf(v: VehicleRecord): Promise<VehicleState> {
    const revoked = (await deps.certificateRevoked?.(v.vin)) ?? false;
    // The broker refuses it, so no report, command or answer passes: offline even if its last report said online.
    return { ...v, online: v.online && !revoked, revoked };
  }

  async function link(input: LinkInput): Promise<VehicleState> {
    // Deny by default: consent is the owner's statement, so a link that states none is refused, not assumed.
    if (input.consent === undefined) {
      throw new ApiError('CONSENT_INVALID', {
        detail: `consent is required: exactly ${CONSENTED_ACTIONS.join(' and ')}; none was given`,
      });
    }
    if (!isExactConsent(input.consent)) {
      throw new ApiError('CONSENT_INVALID', {
        detail: `consent is exactly ${CONSENTED_ACTIONS.join(' and ')}; asked for ${input.consent.join(', ') || 'nothing'}`,
      });
    }
    const problem = vinProblem(input.vin);
    if (problem) throw new ApiError(problem);
    if (!vinAgreesWithYear(input.vin, input.year)) {
      throw new ApiError('VIN_YEAR_MISMATCH', {
        detail: `VIN positions 7 and 10 ('${input.vin[6]}', '${input.vin[9]}') state model year ${modelYearOf(input.vin) ?? 'none'}, not ${input.year}`,
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
    const { consent: _, ...vehicle } = input;
    const linkedAt = now();
    const existing = await findVehicle(db, input.vin);
    if (existing && existing.unlinkedAt === null) throw new ApiError('VEHICLE_ALREADY_LINKED');
    // TOKEN.md §9.3: the certificate is pinned now, so every later ack is checked against this one.
    const pinned = deps.certificateFor(input.vin, linkedAt);
    if (!pinned.ok)
      throw new ApiError('VEHICLE_NOT_ENROLLED', { detail: `${pinned.problem} for ${input.vin}` });
    const record = {
      ...vehicle,
      consent: [...CONSENTED_ACTIONS],
      linkedAt,
      certPem: pinned.certificate.toString(),
    };
    await write(async (trx) => {
      // A VIN unlinked before keeps its row (its deliveries refer to it) and is linked again in place.
      if (existing) await relinkVehicle(trx, record);
      else await insertVehicle(trx, record);
      // The owner's consent is where every later unlock's authority starts.
      await queueAudit(trx, {
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
    return stateOf((await findVehicle(db, input.vin)) as VehicleRecord);
  }

  async function get(vin: string): Promise<VehicleState> {
    const v = await findVehicle(db, vin);
    if (!v || v.unlinkedAt !== null) throw new ApiError('NOT_FOUND', { detail: `no linked vehicle ${vin}` });
    return stateOf(v);
  }

  /**
   * The broker closed the car's live session because its certificate is revoked: the car is offline now. Its will
   * is refused with that certificate, so without this the gateway would hear nothing until a report was due.
   */
  async function sessionRevoked(vin: string): Promise<void> {
    await write((trx) => markVehicleOffline(trx, vin));
  }

  async function addLocation(input: LocationInput): Promise<LocationRecord> {
    if (input.access !== 'public') {
      throw new ApiError('LOCATION_NOT_PUBLIC', {
        detail: `a ${input.access} location is refused: the car must be parked where a driver may walk up to it`,
      });
    }
    if (input.radiusM > deps.maxRadiusM) {
      throw new ApiError('RADIUS_TOO_LARGE', { detail: `radiusM at most ${deps.maxRadiusM}` });
    }
    const location: LocationRecord = { id: `loc_${deps.newId()}`, ...input, createdAt: now() };
    await write(async (trx) => {
      await insertLocation(trx, location);
      await queueAudit(trx, {
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

  /**
   * Applies a state or presence message from a car. A message that would change nothing costs a read, not a
   * commit: a VIN the store has never linked (no row to update), a presence of a car already offline, a report
   * that repeats the row.
   */
  async function observe(vin: string, message: StateMessage): Promise<void> {
    const seenAt = now();
    const row = await findVehicle(db, vin);
    if (!row) return;
    if (message.type === 'presence') {
      if (row.online) await write((trx) => recordVehicleState(trx, vin, { online: false, seenAt }));
      return;
    }
    const doorsOpen = Object.values(message.doors).some((d) => d === 'open') || message.trunk === 'open';
    const state: ReportedState = {
      online: true,
      locked: message.locked,
      position: message.position,
      ignition: message.ignition,
      doorsOpen,
      seenAt,
      seq: message.seq,
    };
    // A report that repeats the row (the ack before it already recorded the lock) costs a read, not a commit. The
    // first report of each car after this process started is always written (a restart shows the car back).
    if (reported.has(vin) && !reportChanges(row, state, lastSeenResolutionMs)) return;
    await write((trx) => recordVehicleState(trx, vin, state));
    reported.add(vin);
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

  const list = async (): Promise<VehicleState[]> =>
    Promise.all((await listVehicles(db)).filter((v) => v.unlinkedAt === null).map(stateOf));

  return { link, get, list, addLocation, observe, sessionRevoked, pinMissingCertificates };
}

export type VehicleService = ReturnType<typeof createVehicleService>;

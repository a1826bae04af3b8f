// Owns mass issuance of synthetic vehicle identities, for benchmarks and load tests.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { composeVin } from '../protocols/vin.ts';
import { devPkiPaths } from './dev-pki.ts';
import { CertError } from './errors.ts';
import { DIRECTORY_MODE, writeIdentity } from './files.ts';
import { issueVehicleIdentity } from './identity.ts';
import { createCa, createIssuer } from './pki.ts';

export const FLEET_CA_COMMON_NAME = 'Curbside Key Fleet CA';
/** Synthetic VINs share this WMI and descriptor so they are easy to tell apart from the seeded fleet. */
const SYNTHETIC_WMI = '9ZZ';
const SYNTHETIC_DESCRIPTOR = 'SYNTH';
const SYNTHETIC_YEAR = 2025;
const PLANTS = 'ABCDEFGHJKLMNPRSTUVWXYZ';
const PER_PLANT = 1_000_000;
export const MAX_FLEET_SIZE = PLANTS.length * PER_PLANT;
/** Enough to keep the pool's four threads busy; more only queues. */
const WRITES_IN_FLIGHT = 16;

/** The index-th synthetic VIN: valid check digit, plant letter and six-digit serial from the index. */
export function syntheticVin(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_FLEET_SIZE) {
    throw new CertError('CERT_OPTIONS_INVALID', `synthetic VIN index out of range: ${index}`);
  }
  const plant = PLANTS[Math.floor(index / PER_PLANT)] as string;
  const serial = String(index % PER_PLANT).padStart(6, '0');
  return composeVin(SYNTHETIC_WMI, SYNTHETIC_DESCRIPTOR, SYNTHETIC_YEAR, `${plant}${serial}`);
}

export interface IssueFleetOptions {
  /** Gets ca.crt/ca.key (re-used when present) and vehicles/<VIN>.crt/.key. */
  dir: string;
  count: number;
  /** The index-th VIN to issue; syntheticVin by default. Load tests pass VINs the catalog accepts. */
  vinOf?: (index: number) => string;
  onProgress?: (done: number, total: number) => void;
  /** Certificate time. */
  now?: () => Date;
  /** Monotonic milliseconds for the rate; performance.now by default. */
  clock?: () => number;
}

export interface FleetReport {
  dir: string;
  count: number;
  firstVin: string;
  lastVin: string;
  elapsedMs: number;
  /** Identities issued and written per second, CA setup excluded. */
  perSecond: number;
}

/**
 * Issues count identities into dir. Key generation and signing run on this thread while up to
 * WRITES_IN_FLIGHT identities are being written by libuv's pool, so disk latency overlaps with work.
 */
export async function issueFleet(options: IssueFleetOptions): Promise<FleetReport> {
  const { count } = options;
  if (!Number.isInteger(count) || count < 1 || count > MAX_FLEET_SIZE) {
    throw new CertError('CERT_OPTIONS_INVALID', `count must be an integer in 1..${MAX_FLEET_SIZE}`);
  }
  const clock = options.clock ?? (() => performance.now());
  const vinOf = options.vinOf ?? syntheticVin;
  const paths = devPkiPaths(options.dir);
  let ca: { certPem: string; keyPem: string };
  if (existsSync(paths.caCert) && existsSync(paths.caKey)) {
    ca = { certPem: readFileSync(paths.caCert, 'utf8'), keyPem: readFileSync(paths.caKey, 'utf8') };
  } else {
    ca = createCa({ commonName: FLEET_CA_COMMON_NAME, ...(options.now ? { now: options.now } : {}) });
    await writeIdentity({ cert: paths.caCert, key: paths.caKey }, ca);
  }
  const issuer = createIssuer(ca);
  // Made once here, so that each of the count pairs costs no directory lookups.
  await mkdir(paths.vehiclesDir, { recursive: true, mode: DIRECTORY_MODE });
  const vehicleOptions = options.now ? { now: options.now } : {};
  const inFlight = new Set<Promise<void>>();
  let done = 0;
  let failure: { error: unknown } | null = null;
  const started = clock();
  for (let i = 0; i < count && failure === null; i++) {
    const vin = vinOf(i);
    const issued = issueVehicleIdentity(issuer, vin, vehicleOptions);
    const write: Promise<void> = writeIdentity(
      { cert: paths.vehicleCert(vin), key: paths.vehicleKey(vin) },
      issued,
      { parentsExist: true },
    )
      .then(
        () => {
          done++;
          options.onProgress?.(done, count);
        },
        (error: unknown) => {
          failure ??= { error };
        },
      )
      .finally(() => inFlight.delete(write));
    inFlight.add(write);
    if (inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure !== null) throw (failure as { error: unknown }).error;
  const elapsedMs = Math.max(clock() - started, 1e-3);
  return {
    dir: options.dir,
    count,
    firstVin: vinOf(0),
    lastVin: vinOf(count - 1),
    elapsedMs,
    perSecond: (count * 1000) / elapsedMs,
  };
}

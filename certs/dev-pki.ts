// Owns the development PKI directory: what files it holds, creating the missing ones, and revoking a car.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { kidFor, type TrustedKeysFile, TrustedKeysFileSchema, trustedJwkFor } from '../protocols/keys.ts';
import { Vin } from '../protocols/messages.ts';
import { VIN_PATTERN, vinProblem } from '../protocols/vin.ts';
import { createCrl, serialKey } from './crl.ts';
import { CertError } from './errors.ts';
import { writeIdentity, writePrivateFile, writePublicFile } from './files.ts';
import { gatewayUri, issueVehicleIdentity } from './identity.ts';
import { createCa, createIssuer, type IssuedCertificate, type Issuer } from './pki.ts';

/** certs/dev beside this file; git ignores it. */
export const DEFAULT_DEV_PKI_DIR = join(dirname(fileURLToPath(import.meta.url)), 'dev');
export const DEV_CA_COMMON_NAME = 'Curbside Key Dev CA';
export const BROKER_COMMON_NAME = 'broker';
export const GATEWAY_NAME = 'gateway';
/** Names the broker answers to in development: clients may dial it by name or by loopback address. */
export const BROKER_DNS_NAMES = ['localhost'] as const;
export const BROKER_IP_ADDRESSES = ['127.0.0.1', '::1'] as const;
/** A CRL past nextUpdate makes OpenSSL refuse every client (X509_V_ERR_CRL_HAS_EXPIRED). */
export const CRL_LIFETIME_MS = 30 * 86_400_000;
/** ensureDevPki re-signs the CRL when less than this is left of it. */
export const CRL_REFRESH_MS = 7 * 86_400_000;

export interface DevPkiPaths {
  dir: string;
  caCert: string;
  caKey: string;
  brokerCert: string;
  brokerKey: string;
  gatewayCert: string;
  gatewayKey: string;
  vehiclesDir: string;
  vehicleCert(vin: string): string;
  vehicleKey(vin: string): string;
  /** The gateway's Ed25519 token-signing key, PKCS#8 PEM. */
  tokenSigningKey: string;
  /** The trust anchors cars pin: TrustedKeysFileSchema from protocols/keys.ts. */
  trustedKeys: string;
  /** The audit log's Ed25519 checkpoint-signing key, PKCS#8 PEM, and its public key (SPKI PEM) for reviewers. */
  auditCheckpointKey: string;
  auditCheckpointPub: string;
  crl: string;
  /** The revocation state the CRL is rebuilt from: RevocationStateSchema. */
  revoked: string;
}

const vehicleFile = (vehiclesDir: string, vin: string, extension: string): string => {
  // A VIN becomes a file name, so anything but the VIN alphabet would be a path.
  if (!VIN_PATTERN.test(vin)) throw new CertError('VIN_INVALID', `VIN_MALFORMED: ${vin}`);
  return join(vehiclesDir, `${vin}.${extension}`);
};

/** Where each file of a development PKI lives; reads nothing. */
export function devPkiPaths(dir: string): DevPkiPaths {
  const vehiclesDir = join(dir, 'vehicles');
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    brokerCert: join(dir, 'broker.crt'),
    brokerKey: join(dir, 'broker.key'),
    gatewayCert: join(dir, 'gateway.crt'),
    gatewayKey: join(dir, 'gateway.key'),
    vehiclesDir,
    vehicleCert: (vin) => vehicleFile(vehiclesDir, vin, 'crt'),
    vehicleKey: (vin) => vehicleFile(vehiclesDir, vin, 'key'),
    tokenSigningKey: join(dir, 'token-signing.key'),
    trustedKeys: join(dir, 'trusted-keys.json'),
    auditCheckpointKey: join(dir, 'audit-checkpoint.key'),
    auditCheckpointPub: join(dir, 'audit-checkpoint.pub'),
    crl: join(dir, 'crl.pem'),
    revoked: join(dir, 'revoked.json'),
  };
}

/**
 * The paths of an existing development PKI, after checking that what the broker, gateway and cars
 * read is there (not ca.key, which only issuing needs, nor vehicle files, which are per car).
 */
export function loadDevPki(dir: string = DEFAULT_DEV_PKI_DIR): DevPkiPaths {
  const paths = devPkiPaths(dir);
  const required = [
    paths.caCert,
    paths.brokerCert,
    paths.brokerKey,
    paths.gatewayCert,
    paths.gatewayKey,
    paths.tokenSigningKey,
    paths.trustedKeys,
    paths.crl,
  ];
  const missing = required.filter((path) => !existsSync(path));
  if (missing.length > 0) {
    throw new CertError(
      'PKI_INCOMPLETE',
      `missing ${missing.join(', ')}; run npm run certs -- dev --dir ${dir}`,
    );
  }
  return paths;
}

const HexSerial = z.string().regex(/^[0-9A-F]{1,40}$/);
export const RevocationStateSchema = z.strictObject({
  /** The cRLNumber of the CRL last written (RFC 5280 §5.2.3). */
  crlNumber: z.number().int().positive(),
  nextUpdate: z.iso.datetime(),
  revoked: z.array(z.strictObject({ vin: Vin, serial: HexSerial, revokedAt: z.iso.datetime() })),
});
export type RevocationState = z.infer<typeof RevocationStateSchema>;

export interface EnsureDevPkiOptions {
  dir: string;
  vins: readonly string[];
  now?: () => Date;
}

export interface EnsureDevPkiResult extends DevPkiPaths {
  /** Files (relative to dir, without extension for pairs) written by this run. */
  created: string[];
  /** Files found valid and left as they were. */
  kept: string[];
}

const read = (path: string): string => readFileSync(path, 'utf8');

/**
 * An existing identity is kept only when both files are there, the certificate was signed by this CA,
 * the key is its key and now lies inside its validity; anything else is re-issued. A revoked
 * certificate is kept: deleting its files is how a car is re-enrolled.
 */
function usableIdentity(files: { cert: string; key: string }, ca: X509Certificate, now: Date): boolean {
  if (!existsSync(files.cert) || !existsSync(files.key)) return false;
  try {
    const cert = new X509Certificate(read(files.cert));
    const key = createPrivateKey(read(files.key));
    return (
      cert.checkIssued(ca) &&
      cert.verify(ca.publicKey) &&
      cert.checkPrivateKey(key) &&
      Date.parse(cert.validFrom) <= now.getTime() &&
      now.getTime() < Date.parse(cert.validTo)
    );
  } catch {
    return false;
  }
}

export function readRevocationState(path: string): RevocationState {
  try {
    return RevocationStateSchema.parse(JSON.parse(read(path)));
  } catch (error) {
    throw new CertError('PKI_STATE_INVALID', `${path}: ${(error as Error).message.split('\n')[0]}`);
  }
}

async function writeCrl(
  paths: DevPkiPaths,
  ca: { certPem: string; keyPem: string },
  state: Omit<RevocationState, 'nextUpdate'>,
  now: Date,
): Promise<RevocationState> {
  const nextUpdate = new Date(now.getTime() + CRL_LIFETIME_MS);
  const next: RevocationState = {
    crlNumber: state.crlNumber,
    nextUpdate: nextUpdate.toISOString(),
    revoked: state.revoked,
  };
  // State first: if the CRL write is lost, revoking again re-signs from it.
  await writePublicFile(paths.revoked, `${JSON.stringify(next, null, 2)}\n`);
  await writePublicFile(
    paths.crl,
    createCrl({
      ca,
      revoked: next.revoked.map((r) => ({ serial: r.serial, revokedAt: new Date(r.revokedAt) })),
      thisUpdate: now,
      nextUpdate,
      crlNumber: next.crlNumber,
    }),
  );
  return next;
}

function readTokenKey(path: string): KeyObject {
  try {
    const key = createPrivateKey(read(path));
    if (key.asymmetricKeyType === 'ed25519') return key;
  } catch {
    // reported below: a key we cannot use is never silently replaced
  }
  throw new CertError(
    'PKI_STATE_INVALID',
    `${path} is not an Ed25519 private key; move it away to create a new one`,
  );
}

function readTrustedKeys(path: string): TrustedKeysFile | null {
  try {
    return TrustedKeysFileSchema.parse(JSON.parse(read(path)));
  } catch {
    return null;
  }
}

/**
 * Creates whatever part of the development PKI is missing and keeps the rest, so it can run on
 * every start. A half-present CA (certificate without key or the reverse) is refused rather than
 * replaced, since replacing it would silently invalidate every identity and every pinned trust.
 */
export async function ensureDevPki(options: EnsureDevPkiOptions): Promise<EnsureDevPkiResult> {
  const now = (options.now ?? (() => new Date()))();
  const clock = () => now;
  const paths = devPkiPaths(options.dir);
  const created: string[] = [];
  const kept: string[] = [];
  const vins = [...new Set(options.vins)];
  for (const vin of vins) {
    const problem = vinProblem(vin);
    if (problem !== null) throw new CertError('VIN_INVALID', `${problem}: ${vin}`);
  }

  const hasCaCert = existsSync(paths.caCert);
  const hasCaKey = existsSync(paths.caKey);
  if (hasCaCert !== hasCaKey) {
    throw new CertError(
      'PKI_INCOMPLETE',
      `${hasCaCert ? paths.caKey : paths.caCert} is missing; restore it or remove ${paths.dir}`,
    );
  }
  let ca: IssuedCertificate | { certPem: string; keyPem: string };
  const newCa = !hasCaCert;
  if (newCa) {
    ca = createCa({ commonName: DEV_CA_COMMON_NAME, now: clock });
    await writeIdentity({ cert: paths.caCert, key: paths.caKey }, ca);
    created.push('ca');
  } else {
    ca = { certPem: read(paths.caCert), keyPem: read(paths.caKey) };
    kept.push('ca');
  }
  const issuer: Issuer = createIssuer(ca);
  const caCertificate = new X509Certificate(ca.certPem);

  const identity = async (
    label: string,
    files: { cert: string; key: string },
    issue: () => IssuedCertificate,
  ): Promise<void> => {
    if (usableIdentity(files, caCertificate, now)) {
      kept.push(label);
      return;
    }
    await writeIdentity(files, issue());
    created.push(label);
  };
  await identity('broker', { cert: paths.brokerCert, key: paths.brokerKey }, () =>
    issuer.issue({
      commonName: BROKER_COMMON_NAME,
      dns: BROKER_DNS_NAMES,
      ips: BROKER_IP_ADDRESSES,
      extendedKeyUsage: ['serverAuth'],
      now: clock,
    }),
  );
  await identity('gateway', { cert: paths.gatewayCert, key: paths.gatewayKey }, () =>
    issuer.issue({
      commonName: GATEWAY_NAME,
      uris: [gatewayUri(GATEWAY_NAME)],
      extendedKeyUsage: ['clientAuth'],
      now: clock,
    }),
  );
  for (const vin of vins) {
    await identity(`vehicles/${vin}`, { cert: paths.vehicleCert(vin), key: paths.vehicleKey(vin) }, () =>
      issueVehicleIdentity(issuer, vin, { now: clock }),
    );
  }

  let tokenKey: KeyObject;
  if (existsSync(paths.tokenSigningKey)) {
    tokenKey = readTokenKey(paths.tokenSigningKey);
    kept.push('token-signing.key');
  } else {
    tokenKey = generateKeyPairSync('ed25519').privateKey;
    await writePrivateFile(
      paths.tokenSigningKey,
      tokenKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    );
    created.push('token-signing.key');
  }
  const tokenPublicKey = createPublicKey(tokenKey);
  const kid = await kidFor(tokenPublicKey);
  const trusted = readTrustedKeys(paths.trustedKeys);
  if (trusted?.keys.some((key) => key.kid === kid)) {
    kept.push('trusted-keys.json');
  } else {
    // Keys already pinned stay pinned (a rotation in progress); the current key joins them.
    const keys = [...(trusted?.keys ?? []), await trustedJwkFor(tokenPublicKey)].slice(-16);
    await writePublicFile(
      paths.trustedKeys,
      `${JSON.stringify(TrustedKeysFileSchema.parse({ keys }), null, 2)}\n`,
    );
    created.push('trusted-keys.json');
  }

  // The audit log signs checkpoints with a key of its own, never the token key (protocols/AUDIT.md §5).
  let auditKey: KeyObject;
  if (existsSync(paths.auditCheckpointKey)) {
    auditKey = readTokenKey(paths.auditCheckpointKey);
    kept.push('audit-checkpoint.key');
  } else {
    auditKey = generateKeyPairSync('ed25519').privateKey;
    await writePrivateFile(
      paths.auditCheckpointKey,
      auditKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    );
    created.push('audit-checkpoint.key');
  }
  const auditPub = createPublicKey(auditKey).export({ type: 'spki', format: 'pem' }) as string;
  if (existsSync(paths.auditCheckpointPub) && read(paths.auditCheckpointPub) === auditPub) {
    kept.push('audit-checkpoint.pub');
  } else {
    await writePublicFile(paths.auditCheckpointPub, auditPub);
    created.push('audit-checkpoint.pub');
  }

  // A new CA starts a new revocation history: serials of the old one mean nothing under it.
  if (newCa || !existsSync(paths.revoked)) {
    await writeCrl(paths, ca, { crlNumber: 1, revoked: [] }, now);
    created.push('crl.pem');
  } else {
    const state = readRevocationState(paths.revoked);
    if (!existsSync(paths.crl) || Date.parse(state.nextUpdate) - now.getTime() < CRL_REFRESH_MS) {
      await writeCrl(paths, ca, { crlNumber: state.crlNumber + 1, revoked: state.revoked }, now);
      created.push('crl.pem');
    } else {
      kept.push('crl.pem');
    }
  }
  return { ...paths, created, kept };
}

export interface RevokeVehicleOptions {
  dir: string;
  vin: string;
  /**
   * The serial to revoke, hex. Defaults to the car's current certificate; after a rotation it names the
   * previous one, which is no longer on disk.
   */
  serial?: string;
  now?: () => Date;
}

export interface RevokeVehicleResult {
  vin: string;
  serial: string;
  /** The cRLNumber of the CRL just written. */
  crlNumber: number;
  /** True when the serial was already listed; the CRL is re-signed anyway, which repairs an interrupted revoke. */
  alreadyRevoked: boolean;
}

/** Lists a certificate of the car in revoked.json and re-signs crl.pem with the next cRLNumber. */
export async function revokeVehicle(options: RevokeVehicleOptions): Promise<RevokeVehicleResult> {
  const now = (options.now ?? (() => new Date()))();
  const paths = devPkiPaths(options.dir);
  const certPath = paths.vehicleCert(options.vin);
  if (options.serial === undefined && !existsSync(certPath))
    throw new CertError('VEHICLE_UNKNOWN', `no certificate for ${options.vin} in ${paths.dir}`);
  for (const path of [paths.caCert, paths.caKey, paths.revoked]) {
    if (!existsSync(path)) throw new CertError('PKI_INCOMPLETE', `missing ${path}`);
  }
  const serial =
    options.serial === undefined
      ? new X509Certificate(read(certPath)).serialNumber.toUpperCase()
      : serialKey(options.serial);
  const state = readRevocationState(paths.revoked);
  const alreadyRevoked = state.revoked.some((entry) => serialKey(entry.serial) === serial);
  const revoked = alreadyRevoked
    ? state.revoked
    : [...state.revoked, { vin: options.vin, serial, revokedAt: now.toISOString() }];
  const ca = { certPem: read(paths.caCert), keyPem: read(paths.caKey) };
  const written = await writeCrl(paths, ca, { crlNumber: state.crlNumber + 1, revoked }, now);
  return { vin: options.vin, serial, crlNumber: written.crlNumber, alreadyRevoked };
}

export interface ReissueVehicleOptions {
  dir: string;
  vin: string;
  now?: () => Date;
}

export interface ReissueVehicleResult {
  vin: string;
  /** The serial of the certificate replaced, or null when the car had none. */
  previousSerial: string | null;
  serial: string;
}

/**
 * Rotation, step one: a new key and certificate for the car, written over the old files. The previous
 * certificate stays valid, so the car keeps working until it reconnects with the new one; step two is
 * revokeVehicle({ serial: previousSerial }).
 */
export async function reissueVehicle(options: ReissueVehicleOptions): Promise<ReissueVehicleResult> {
  const problem = vinProblem(options.vin);
  if (problem !== null) throw new CertError('VIN_INVALID', `${problem}: ${options.vin}`);
  const paths = devPkiPaths(options.dir);
  for (const path of [paths.caCert, paths.caKey]) {
    if (!existsSync(path)) throw new CertError('PKI_INCOMPLETE', `missing ${path}`);
  }
  const certPath = paths.vehicleCert(options.vin);
  const previousSerial = existsSync(certPath)
    ? new X509Certificate(read(certPath)).serialNumber.toUpperCase()
    : null;
  const issuer = createIssuer({ certPem: read(paths.caCert), keyPem: read(paths.caKey) });
  const issued = issueVehicleIdentity(issuer, options.vin, options.now ? { now: options.now } : {});
  await writeIdentity({ cert: certPath, key: paths.vehicleKey(options.vin) }, issued);
  return { vin: options.vin, previousSerial, serial: issued.serial };
}

// Owns whether a car's certificate is revoked, as the gateway itself knows it: the CA's CRL (the file the broker
// enforces, applied again whenever it changes) against the serial of the certificate the CA issued the VIN now.
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { type CrlContents, readCrl, serialKey } from '../../certs/index.ts';
import { VIN_PATTERN } from '../../protocols/index.ts';
import type { Broker } from '../broker/broker.ts';
import { type CrlWatch, watchCrl } from '../broker/crl-watch.ts';
import { CrlError } from '../errors.ts';

export interface VehicleRevocationDeps {
  caPem: string;
  /** The CRL in use at start, PEM. One that does not verify stops the start: a gateway that cannot revoke fails closed. */
  crl: string;
  /** The certificate the CA issues the VIN now (the PKI folder), PEM, or null. */
  issuedCertificate?: (vin: string) => string | null;
  /** The certificate pinned for the VIN when it was linked (the store), for a VIN with none on file. */
  pinnedCertificate: (vin: string) => Promise<string | null>;
}

export interface VehicleRevocation {
  /**
   * Whether the certificate the VIN's car authenticates with is on the CRL in use. The issued certificate is the one
   * asked about, not the pinned one: after a rotation (a new certificate, then the old serial revoked) the car is
   * served with its new certificate before an ack of it re-pins it.
   */
  isRevoked(vin: string): Promise<boolean>;
  /**
   * Applies a re-signed CRL (the file watch, the same bytes the embedded broker gets). One that does not verify
   * against the CA (CRL_INVALID) or is older than the one in use (CRL_STALE) is refused and the one in use stays.
   * An expired CRL is applied: its revocations still hold, and refusing more is the safe side.
   */
  reloadCrl(pem: string): { crlNumber: bigint | null; revoked: number };
}

function parse(pem: string, caPem: string): CrlContents {
  try {
    return readCrl(pem, caPem);
  } catch (err) {
    throw new CrlError('CRL_INVALID', (err as Error).message, { cause: err });
  }
}

function serialOfPem(pem: string | null): string | null {
  if (pem === null) return null;
  try {
    return serialKey(new X509Certificate(pem).serialNumber);
  } catch {
    return null;
  }
}

export function createVehicleRevocation(deps: VehicleRevocationDeps): VehicleRevocation {
  let crl = parse(deps.crl, deps.caPem);
  // Each VIN's certificate serial, read once per CRL: whether a car is revoked changes only with a new CRL, or with a
  // new certificate, and a new one replacing a revoked one is read again below (a revoked serial is never trusted
  // from here). Cleared on every CRL applied.
  const serials = new Map<string, string>();
  const SERIALS_LIMIT = 100_000;

  async function currentSerial(vin: string): Promise<string | null> {
    const issued = serialOfPem(deps.issuedCertificate?.(vin) ?? null);
    if (issued !== null) return issued;
    return serialOfPem(await deps.pinnedCertificate(vin));
  }

  return {
    async isRevoked(vin) {
      // The common case, an empty list, costs no read.
      if (crl.revoked.size === 0) return false;
      const known = serials.get(vin);
      if (known !== undefined && !crl.revoked.has(known)) return false;
      const serial = await currentSerial(vin);
      // No certificate on file at all: nothing to hold against it here (the broker admits no car without one).
      if (serial === null) return false;
      if (serials.size >= SERIALS_LIMIT) serials.clear();
      serials.set(vin, serial);
      return crl.revoked.has(serial);
    },
    reloadCrl(pem) {
      const next = parse(pem, deps.caPem);
      if (crl.crlNumber !== null && (next.crlNumber === null || next.crlNumber < crl.crlNumber)) {
        throw new CrlError(
          'CRL_STALE',
          `CRL number ${next.crlNumber} is older than the one in use (${crl.crlNumber})`,
        );
      }
      crl = next;
      serials.clear();
      return { crlNumber: next.crlNumber, revoked: next.revoked.size };
    },
  };
}

/**
 * Keeps the gateway's view of revocations current. The embedded broker closes a revoked car's live session and
 * refuses its will (it carries the revoked certificate), so it tells the gateway itself: the car is offline from
 * that moment. A re-signed CRL on disk goes to the gateway's check first, then to the embedded broker, so that by
 * the time the broker drops a session the car reads as revoked. Returns the CRL watch (null without a file).
 */
export function followRevocations(deps: {
  broker: Broker | null;
  revocation: Pick<VehicleRevocation, 'reloadCrl'>;
  sessionRevoked: (vin: string) => Promise<void>;
  crlFile: string | undefined;
  current: string;
  logger: Logger;
}): CrlWatch | null {
  const { broker, logger } = deps;
  broker?.onRefusal((refusal) => {
    const vin = refusal.identity;
    if (refusal.stage !== 'session' || refusal.code !== 'CERT_REVOKED' || !vin || !VIN_PATTERN.test(vin))
      return;
    deps
      .sessionRevoked(vin)
      .then(() => logger.info({ event: 'vehicle.session_revoked', vin }, 'revoked car is offline'))
      .catch((err: unknown) => logger.error({ err, vin }, 'revoked car not recorded offline'));
  });
  if (!deps.crlFile) return null;
  return watchCrl({
    file: deps.crlFile,
    targets: [
      { name: 'vehicles', reloadCrl: (pem) => deps.revocation.reloadCrl(pem) },
      ...(broker ? [{ name: 'broker', reloadCrl: (pem: string) => broker.reloadCrl(pem) }] : []),
    ],
    logger,
    current: deps.current,
  });
}

// Owns which certificate a car's acks are verified against: the CA-issued one for its VIN, pinned at link time.
import { X509Certificate } from 'node:crypto';
import { vinFromCertificate } from '../../certs/index.ts';

export type CertificateProblem =
  | 'CERT_MISSING'
  | 'CERT_UNREADABLE'
  | 'CERT_NOT_FROM_CA'
  | 'CERT_VIN_MISMATCH'
  | 'CERT_NOT_VALID_NOW';

export type PinnedCertificate =
  | { ok: true; certificate: X509Certificate }
  | { ok: false; problem: CertificateProblem };

/**
 * Checks a car's certificate before the gateway pins it (TOKEN.md §9.3): issued and signed by the project CA,
 * binding exactly this VIN (CN and SAN URI, as the broker reads it), valid now, with a P-256 key.
 */
export function pinVehicleCertificate(input: {
  pem: string | null;
  caPem: string;
  vin: string;
  now: number;
}): PinnedCertificate {
  if (input.pem === null) return { ok: false, problem: 'CERT_MISSING' };
  let certificate: X509Certificate;
  let ca: X509Certificate;
  try {
    certificate = new X509Certificate(input.pem);
    ca = new X509Certificate(input.caPem);
  } catch {
    return { ok: false, problem: 'CERT_UNREADABLE' };
  }
  if (!certificate.checkIssued(ca) || !certificate.verify(ca.publicKey))
    return { ok: false, problem: 'CERT_NOT_FROM_CA' };
  if (vinFromCertificate(certificate) !== input.vin) return { ok: false, problem: 'CERT_VIN_MISMATCH' };
  if (!validAt(certificate, input.now)) return { ok: false, problem: 'CERT_NOT_VALID_NOW' };
  const key = certificate.publicKey;
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    return { ok: false, problem: 'CERT_UNREADABLE' };
  }
  return { ok: true, certificate };
}

export const validAt = (certificate: X509Certificate, at: number): boolean =>
  Date.parse(certificate.validFrom) <= at && at < Date.parse(certificate.validTo);

/**
 * The certificate the CA issued a VIN, checked against the CA, the VIN and the time (TOKEN.md §9.3), read
 * through `issued` (the PKI folder); `currentCertificate` is its PEM, or null when it does not pass.
 */
export function enrolledCertificates(caPem: string, issued: ((vin: string) => string | null) | undefined) {
  const enrolledCertificate = (vin: string, at: number): PinnedCertificate =>
    pinVehicleCertificate({ pem: issued?.(vin) ?? null, caPem, vin, now: at });
  const currentCertificate = (vin: string, at: number): string | null => {
    const enrolled = enrolledCertificate(vin, at);
    return enrolled.ok ? enrolled.certificate.toString() : null;
  };
  return { enrolledCertificate, currentCertificate };
}

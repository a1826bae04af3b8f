// Owns the rules binding a certificate to a name: CN and exactly one SAN URI urn:vin:/urn:gateway: agreeing.
import type { X509Certificate } from 'node:crypto';
import { VIN_PATTERN, vinProblem } from '../protocols/vin.ts';
import { CertError } from './errors.ts';
import { inspectCertificate, subjectAltNamesOf } from './inspect.ts';
import type { IssuedCertificate, IssueOptions, Issuer } from './pki.ts';

export const VIN_URI_PREFIX = 'urn:vin:';
export const vinUri = (vin: string): string => `${VIN_URI_PREFIX}${vin}`;
export const GATEWAY_URI_PREFIX = 'urn:gateway:';
export const gatewayUri = (name: string): string => `${GATEWAY_URI_PREFIX}${name}`;
export const GATEWAY_NAME_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;

/** What the name checks read of a certificate: its DER. An X509Certificate, or tls's peer certificate object. */
export type CertificateDer = Pick<X509Certificate, 'raw'>;

export type VehicleIdentityOptions = Pick<
  IssueOptions,
  'notBefore' | 'notAfter' | 'now' | 'extendedKeyUsage'
>;

/** A vehicle's client certificate: CN = VIN, SAN URI urn:vin:VIN, EKU clientAuth unless a test overrides it. */
export function issueVehicleIdentity(
  issuer: Issuer,
  vin: string,
  options: VehicleIdentityOptions = {},
): IssuedCertificate {
  const problem = vinProblem(vin);
  if (problem !== null) throw new CertError('VIN_INVALID', `${problem}: ${vin}`);
  return issuer.issue({ extendedKeyUsage: ['clientAuth'], ...options, commonName: vin, uris: [vinUri(vin)] });
}

/**
 * The one name a certificate binds under a URN prefix, or null. Deny by default: exactly one
 * commonName matching the pattern, and exactly one SAN URI with the prefix (any letter case counts
 * toward "one"), equal to prefix + CN. Parsed from the DER, not from Node's printed subjectAltName,
 * whose quoting of odd values a regular expression can be fooled by.
 */
function boundName(certificate: CertificateDer, prefix: string, pattern: RegExp): string | null {
  let names: string[];
  let uris: string[];
  try {
    const inspected = inspectCertificate(certificate.raw);
    names = inspected.subjectCommonNames;
    uris = subjectAltNamesOf(inspected).flatMap((n) => (n.type === 'uri' ? [n.value] : []));
  } catch {
    return null;
  }
  const [commonName] = names;
  if (names.length !== 1 || commonName === undefined || !pattern.test(commonName)) return null;
  const bound = uris.filter((uri) => uri.toLowerCase().startsWith(prefix));
  if (bound.length !== 1 || bound[0] !== `${prefix}${commonName}`) return null;
  return commonName;
}

/**
 * The VIN a client certificate speaks for (CN = VIN = the urn:vin: URI), or null. Chain, validity,
 * EKU and revocation are the TLS layer's job; this decides only which VIN.
 */
export const vinFromCertificate = (certificate: CertificateDer): string | null =>
  boundName(certificate, VIN_URI_PREFIX, VIN_PATTERN);

/** The gateway name a client certificate speaks for (CN = name = the urn:gateway: URI), or null. */
export const gatewayNameFromCertificate = (certificate: CertificateDer): string | null =>
  boundName(certificate, GATEWAY_URI_PREFIX, GATEWAY_NAME_PATTERN);

// Owns mapping a verified client certificate to a broker identity: a car by VIN, or the gateway by name.
import { type CertificateDer, gatewayNameFromCertificate, vinFromCertificate } from '../../certs/index.ts';
import type { Identity } from './policy.ts';

/** The identity a certificate proves, or null when it proves none (fail closed). */
export function identityOf(cert: CertificateDer): Identity | null {
  const vin = vinFromCertificate(cert);
  if (vin) return { kind: 'vehicle', vin };
  const name = gatewayNameFromCertificate(cert);
  return name ? { kind: 'gateway', name } : null;
}

// Owns reading the gateway's key material (TLS identities, CA, CRL, token-signing key, car certificates) from a PKI folder.
import { existsSync, readFileSync } from 'node:fs';
import type { DevPkiPaths } from '../../certs/index.ts';
import type { GatewayMaterial } from '../gateway.ts';

const read = (path: string): string => readFileSync(path, 'utf8');

export async function loadGatewayMaterial(paths: DevPkiPaths): Promise<GatewayMaterial> {
  return {
    ca: read(paths.caCert),
    brokerCert: read(paths.brokerCert),
    brokerKey: read(paths.brokerKey),
    gatewayCert: read(paths.gatewayCert),
    gatewayKey: read(paths.gatewayKey),
    tokenSigningKey: read(paths.tokenSigningKey),
    crl: read(paths.crl),
    crlFile: paths.crl,
    ...(existsSync(paths.auditCheckpointKey) ? { auditCheckpointKey: read(paths.auditCheckpointKey) } : {}),
    vehicleCertificate: (vin) => {
      const path = paths.vehicleCert(vin);
      return existsSync(path) ? read(path) : null;
    },
  };
}

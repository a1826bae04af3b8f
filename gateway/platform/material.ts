// Owns reading the gateway's key material (TLS identities, CA, CRL, token-signing key, car certificates) from a PKI folder.
import { existsSync, readFileSync } from 'node:fs';
import { type DevPkiPaths, replicaIdentityPaths } from '../../certs/index.ts';

export interface GatewayMaterial {
  ca: string;
  brokerCert: string;
  brokerKey: string;
  gatewayCert: string;
  gatewayKey: string;
  /** PKCS#8 PEM of the Ed25519 token-signing key, the active key of the ring. */
  tokenSigningKey: string;
  /** PEM of the CA's current CRL; the embedded broker does not start without one. */
  crl: string;
  /** Where the CRL lives: the embedded broker re-reads it when it changes (npm run certs -- revoke). */
  crlFile?: string;
  /** PKCS#8 PEM of the Ed25519 audit checkpoint key; without it the log is kept but not checkpointed. */
  auditCheckpointKey?: string;
  /** The certificate the CA issued to a VIN, PEM, or null; read when a vehicle is linked, to pin it. */
  vehicleCertificate?: (vin: string) => string | null;
}

const read = (path: string): string => readFileSync(path, 'utf8');

/**
 * Reads the material of one replica: its own client identity (gateways/gateway-<replica>.crt, certs/replicas.ts)
 * when the PKI holds one, else the shared gateway identity.
 */
export async function loadGatewayMaterial(paths: DevPkiPaths, replica?: string): Promise<GatewayMaterial> {
  const own = replica === undefined ? null : replicaIdentityPaths(paths.dir, replica);
  const identity =
    own && existsSync(own.cert) && existsSync(own.key)
      ? own
      : { cert: paths.gatewayCert, key: paths.gatewayKey };
  return {
    ca: read(paths.caCert),
    brokerCert: read(paths.brokerCert),
    brokerKey: read(paths.brokerKey),
    gatewayCert: read(identity.cert),
    gatewayKey: read(identity.key),
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

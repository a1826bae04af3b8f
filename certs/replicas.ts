// Owns the gateway replicas' own client identities: one certificate per replica (CN gateway-<replica>), so that a
// broker that takes the client id from the certificate (Mosquitto's use_username_as_clientid) gives each replica
// its own session instead of letting one replica's connection end another's.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GATEWAY_NAME } from './dev-pki.ts';
import { CertError } from './errors.ts';
import { writeIdentity } from './files.ts';
import { GATEWAY_NAME_PATTERN, gatewayUri } from './identity.ts';
import { createIssuer } from './pki.ts';

/** A replica name as GATEWAY_REPLICA allows it (gateway/platform/config.ts). */
export const REPLICA_PATTERN = /^[A-Za-z0-9_]{1,32}$/;

/** The gateway name a replica's certificate speaks for, and its session's client id. */
export const replicaGatewayName = (replica: string): string => `${GATEWAY_NAME}-${replica}`;

/** Where a replica's certificate and key live in a PKI folder. */
export function replicaIdentityPaths(dir: string, replica: string): { cert: string; key: string } {
  // The replica becomes a file name, so anything but its alphabet would be a path.
  if (!REPLICA_PATTERN.test(replica))
    throw new CertError('CERT_OPTIONS_INVALID', `replica must be 1 to 32 of A-Z a-z 0-9 _: ${replica}`);
  const base = join(dir, 'gateways', replicaGatewayName(replica));
  return { cert: `${base}.crt`, key: `${base}.key` };
}

/** Issues (or keeps) the client certificate of one replica, signed by the PKI's CA; the key is written 0600. */
export async function ensureReplicaIdentity(options: {
  dir: string;
  replica: string;
  now?: () => Date;
}): Promise<{ cert: string; key: string; created: boolean }> {
  const files = replicaIdentityPaths(options.dir, options.replica);
  if (existsSync(files.cert) && existsSync(files.key)) return { ...files, created: false };
  const caCert = join(options.dir, 'ca.crt');
  const caKey = join(options.dir, 'ca.key');
  for (const path of [caCert, caKey]) {
    if (!existsSync(path)) throw new CertError('PKI_INCOMPLETE', `missing ${path}`);
  }
  const issuer = createIssuer({ certPem: readFileSync(caCert, 'utf8'), keyPem: readFileSync(caKey, 'utf8') });
  const name = replicaGatewayName(options.replica);
  const issued = issuer.issue({
    commonName: name,
    uris: [gatewayUri(name)],
    extendedKeyUsage: ['clientAuth'],
    ...(options.now ? { now: options.now } : {}),
  });
  await writeIdentity(files, issued);
  return { ...files, created: true };
}

/** The gateway names a PKI folder holds certificates for: the shared one, then each replica's. */
export function gatewayNamesIn(dir: string): string[] {
  const folder = join(dir, 'gateways');
  const replicas = existsSync(folder)
    ? readdirSync(folder)
        .filter((f) => f.endsWith('.crt'))
        .map((f) => f.slice(0, -'.crt'.length))
        .filter((name) => GATEWAY_NAME_PATTERN.test(name))
        .sort()
    : [];
  return [GATEWAY_NAME, ...replicas];
}

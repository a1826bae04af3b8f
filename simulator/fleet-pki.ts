// Owns reading what a fleet of cars needs from a PKI folder (the dev-PKI layout of certs/dev-pki.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TrustedKeysFile, TrustedKeysFileSchema } from '../protocols/keys.ts';
import { SimulatorError } from './errors.ts';
import type { FleetPki } from './fleet.ts';

/** The CA, each car's certificate and key (read when the car connects) and the trust anchors cars pin. */
export function readFleetPki(certsDir: string): { pki: FleetPki; trustedKeys: TrustedKeysFile } {
  const read = (relative: string): string => {
    const path = join(certsDir, relative);
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new SimulatorError('SIM_PKI_MISSING', `${path}: ${why} (run npm run certs first?)`);
    }
  };
  const ca = read('ca.crt');
  let trustedKeys: TrustedKeysFile;
  try {
    trustedKeys = TrustedKeysFileSchema.parse(JSON.parse(read('trusted-keys.json')));
  } catch (err) {
    if (err instanceof SimulatorError) throw err;
    throw new SimulatorError(
      'SIM_PKI_MISSING',
      `${join(certsDir, 'trusted-keys.json')}: not a trusted-keys file`,
    );
  }
  const certFor = (vin: string) => ({ cert: read(`vehicles/${vin}.crt`), key: read(`vehicles/${vin}.key`) });
  return { pki: { ca, certFor }, trustedKeys };
}

// Owns the certificate revocation list: an X.509 v2 CRL signed by the CA (RFC 5280 §5).
import { explicit, sequence, smallInteger, time, toPem, unsignedInteger } from './der.ts';
import { CertError } from './errors.ts';
import { authorityKeyIdentifier, crlNumber as crlNumberExtension } from './extensions.ts';
import { type CaMaterial, loadCa, signatureAlgorithm } from './signer.ts';

export interface RevokedCertificate {
  /** Hex, any letter case, as issue() or X509Certificate.serialNumber give it. */
  serial: string;
  revokedAt: Date;
}

export interface CreateCrlOptions {
  ca: CaMaterial;
  revoked: readonly RevokedCertificate[];
  thisUpdate: Date;
  nextUpdate: Date;
  /** §5.2.3: must grow with every CRL this CA issues. */
  crlNumber: number | bigint;
}

/** §5.2.3: cRLNumber is at most 20 octets, so at most 40 hex digits; serials too (§4.1.2.2). */
const SERIAL_HEX = /^[0-9A-Fa-f]{1,40}$/;

function serialBytes(serial: string): Buffer {
  if (!SERIAL_HEX.test(serial)) throw new CertError('CERT_OPTIONS_INVALID', `not a hex serial: ${serial}`);
  return Buffer.from(serial.length % 2 === 0 ? serial : `0${serial}`, 'hex');
}

export function createCrl(options: CreateCrlOptions): string {
  if (!(options.nextUpdate.getTime() > options.thisUpdate.getTime())) {
    throw new CertError('CERT_OPTIONS_INVALID', 'nextUpdate must be later than thisUpdate');
  }
  const signer = loadCa(options.ca);
  const seen = new Set<string>();
  const entries = options.revoked.map((entry) => {
    const bytes = serialBytes(entry.serial);
    const key = BigInt(`0x${bytes.toString('hex')}`).toString(16);
    if (seen.has(key)) throw new CertError('CERT_OPTIONS_INVALID', `serial listed twice: ${entry.serial}`);
    seen.add(key);
    return sequence([unsignedInteger(bytes), time(entry.revokedAt)]);
  });
  const tbsCertList = sequence([
    smallInteger(1), // v2, required because the CRL carries extensions (§5.1.2.1)
    signatureAlgorithm(),
    signer.name,
    time(options.thisUpdate),
    time(options.nextUpdate),
    // §5.1.2.6: with nothing revoked the list is absent, not empty.
    ...(entries.length > 0 ? [sequence(entries)] : []),
    explicit(0, sequence([authorityKeyIdentifier(signer.keyId), crlNumberExtension(options.crlNumber)])),
  ]);
  return toPem('X509 CRL', signer.sign(tbsCertList));
}

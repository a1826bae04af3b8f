// Owns the certificate revocation list: writing an X.509 v2 CRL signed by the CA, and reading one back (RFC 5280 §5).
import { verify, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import {
  type Asn1,
  AsnClass,
  AsnType,
  decode,
  encode,
  explicit,
  fromBinary,
  fromPem,
  oidOf,
  sequence,
  smallInteger,
  time,
  toPem,
  unsignedInteger,
} from './der.ts';
import { CertError } from './errors.ts';
import { authorityKeyIdentifier, crlNumber as crlNumberExtension, EXTENSION_OIDS } from './extensions.ts';
import { inspectCertificate } from './inspect.ts';
import { type CaMaterial, ECDSA_WITH_SHA256, loadCa, signatureAlgorithm } from './signer.ts';

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

/**
 * One spelling per serial, so that a set lookup cannot be dodged by letter case or leading zeros:
 * upper-case hex of the integer, as X509Certificate.serialNumber prints it.
 */
export function serialKey(serial: string): string {
  if (!SERIAL_HEX.test(serial)) throw new CertError('CERT_OPTIONS_INVALID', `not a hex serial: ${serial}`);
  return BigInt(`0x${serial}`).toString(16).toUpperCase();
}

export interface CrlContents {
  crlNumber: bigint | null;
  thisUpdate: Date;
  nextUpdate: Date | null;
  /** serialKey() of every revoked certificate. */
  revoked: ReadonlySet<string>;
}

const crlInvalid = (why: string): CertError => new CertError('CRL_INVALID', `CRL: ${why}`);

const childrenOf = (node: Asn1 | undefined, what: string): Asn1[] => {
  if (node === undefined || !Array.isArray(node.value)) throw crlInvalid(`${what} missing`);
  return node.value;
};

function timeOf(node: Asn1 | undefined, what: string): Date {
  if (node?.type === AsnType.UTCTIME) return forge.asn1.utcTimeToDate(node.value as string);
  if (node?.type === AsnType.GENERALIZEDTIME) return forge.asn1.generalizedTimeToDate(node.value as string);
  throw crlInvalid(`${what} is not a time`);
}

const isTime = (node: Asn1 | undefined): boolean =>
  node?.tagClass === AsnClass.UNIVERSAL &&
  (node.type === AsnType.UTCTIME || node.type === AsnType.GENERALIZEDTIME);

/** The DER bytes of the first element inside the outer SEQUENCE: the signed part, exactly as signed. */
function firstElementBytes(der: Buffer): Buffer {
  const header = (at: number): { start: number; end: number } => {
    const first = der[at + 1];
    if (first === undefined) throw crlInvalid('truncated');
    if (first < 0x80) return { start: at + 2, end: at + 2 + first };
    const count = first & 0x7f;
    if (count === 0 || count > 4) throw crlInvalid('bad length');
    let length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (der[at + 2 + i] ?? 0);
    return { start: at + 2 + count, end: at + 2 + count + length };
  };
  const inner = header(0).start;
  return der.subarray(inner, header(inner).end);
}

/**
 * Reads a PEM CRL and checks it before anything in it is used: DER, ecdsa-with-SHA256 by this CA's
 * key, issuer equal to the CA's subject (§5.1.2.3), then the list. A CRL that fails any check is
 * refused whole, never read in part.
 */
export function readCrl(pem: string, caCertPem: string): CrlContents {
  const der = fromPem('X509 CRL', pem);
  if (der === null) throw crlInvalid('no PEM block "X509 CRL"');
  let root: Asn1;
  try {
    root = decode(der);
  } catch (error) {
    throw crlInvalid(`not DER (${(error as Error).message})`);
  }
  const [tbs, algorithm, signature] = childrenOf(root, 'CertificateList');
  const algorithmOid = childrenOf(algorithm, 'signatureAlgorithm')[0];
  if (algorithmOid === undefined || oidOf(algorithmOid) !== ECDSA_WITH_SHA256)
    throw crlInvalid('signature algorithm is not ecdsa-with-SHA256');
  if (signature?.type !== AsnType.BITSTRING) throw crlInvalid('signatureValue missing');
  const bits = fromBinary(signature.value as string);
  const ca = new X509Certificate(caCertPem);
  if (bits[0] !== 0 || !verify('sha256', firstElementBytes(der), ca.publicKey, bits.subarray(1)))
    throw crlInvalid('signature does not verify with the CA key');

  const fields = childrenOf(tbs, 'tbsCertList');
  // version is present (v2) when the CRL has extensions, which ours always do (§5.1.2.1).
  const at = fields[0]?.type === AsnType.INTEGER ? 1 : 0;
  const issuer = fields[at + 1];
  if (issuer === undefined || !encode(issuer).equals(encode(inspectCertificate(ca.raw).subject)))
    throw crlInvalid('issuer is not the CA');
  const thisUpdate = timeOf(fields[at + 2], 'thisUpdate');
  let next = at + 3;
  let nextUpdate: Date | null = null;
  if (isTime(fields[next])) nextUpdate = timeOf(fields[next++], 'nextUpdate');

  const revoked = new Set<string>();
  let crlNumber: bigint | null = null;
  for (const node of fields.slice(next)) {
    if (node.tagClass === AsnClass.UNIVERSAL && node.type === AsnType.SEQUENCE) {
      for (const entry of childrenOf(node, 'revokedCertificates')) {
        const serial = childrenOf(entry, 'revoked entry')[0];
        if (serial?.type !== AsnType.INTEGER) throw crlInvalid('revoked entry without serial');
        const bytes = fromBinary(serial.value as string);
        if (bytes.length === 0 || bytes.length > 21) throw crlInvalid('revoked serial out of range');
        revoked.add(
          BigInt(`0x${bytes.toString('hex')}`)
            .toString(16)
            .toUpperCase(),
        );
      }
    } else if (node.tagClass === AsnClass.CONTEXT_SPECIFIC && node.type === 0) {
      for (const extension of childrenOf(childrenOf(node, 'crlExtensions')[0], 'Extensions')) {
        const parts = childrenOf(extension, 'Extension');
        if (parts[0] === undefined || oidOf(parts[0]) !== EXTENSION_OIDS.crlNumber) continue;
        const value = decode(fromBinary(parts[parts.length - 1]?.value as string));
        crlNumber = BigInt(`0x${fromBinary(value.value as string).toString('hex') || '0'}`);
      }
    }
  }
  return { crlNumber, thisUpdate, nextUpdate, revoked };
}

// Owns the X.509 v3 extensions this PKI writes into certificates and CRLs (RFC 5280 §4.2, §5.2).
import { isIP } from 'node:net';
import {
  type Asn1,
  boolean,
  derInOctetString,
  implicitPrimitive,
  namedBits,
  octetString,
  oid,
  sequence,
  smallInteger,
} from './der.ts';
import { CertError } from './errors.ts';

export const EXTENSION_OIDS = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  crlNumber: '2.5.29.20',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
} as const;

export const EXTENDED_KEY_USAGE_OIDS = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;
export type ExtendedKeyUsage = keyof typeof EXTENDED_KEY_USAGE_OIDS;

/** RFC 5280 §4.2.1.3 KeyUsage bit positions. */
export const KEY_USAGE_BITS = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const;
export type KeyUsage = keyof typeof KEY_USAGE_BITS;

export interface SubjectAltNames {
  dns?: readonly string[];
  ips?: readonly string[];
  uris?: readonly string[];
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }; DER omits a FALSE default. */
function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  return sequence(
    critical ? [oid(id), boolean(true), derInOctetString(value)] : [oid(id), derInOctetString(value)],
  );
}

/** §4.2.1.9: critical in CA certificates; pathLenConstraint only for a CA. */
export function basicConstraints(ca: boolean, pathLength?: number): Asn1 {
  const body: Asn1[] = [];
  if (ca) {
    body.push(boolean(true));
    if (pathLength !== undefined) body.push(smallInteger(pathLength));
  }
  return extension(EXTENSION_OIDS.basicConstraints, true, sequence(body));
}

/** §4.2.1.3: SHOULD be critical. */
export function keyUsage(usages: readonly KeyUsage[]): Asn1 {
  return extension(EXTENSION_OIDS.keyUsage, true, namedBits(usages.map((u) => KEY_USAGE_BITS[u])));
}

/** §4.2.1.12: left non-critical, as the Web PKI does. */
export function extendedKeyUsage(usages: readonly ExtendedKeyUsage[]): Asn1 {
  return extension(
    EXTENSION_OIDS.extKeyUsage,
    false,
    sequence(usages.map((u) => oid(EXTENDED_KEY_USAGE_OIDS[u]))),
  );
}

export const subjectKeyIdentifier = (keyId: Uint8Array): Asn1 =>
  extension(EXTENSION_OIDS.subjectKeyIdentifier, false, octetString(keyId));

/** §4.2.1.1: keyIdentifier [0] IMPLICIT only; issuer/serial would pin the CA certificate, not its key. */
export const authorityKeyIdentifier = (keyId: Uint8Array): Asn1 =>
  extension(EXTENSION_OIDS.authorityKeyIdentifier, false, sequence([implicitPrimitive(0, keyId)]));

/** §5.2.3: a monotonically increasing sequence number for each CRL the CA issues. */
export const crlNumber = (value: number | bigint): Asn1 =>
  extension(EXTENSION_OIDS.crlNumber, false, smallInteger(value));

const DNS_NAME =
  /^(?=.{1,253}$)(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+$/;

/** §4.2.1.6: GeneralName dNSName [2], uniformResourceIdentifier [6], iPAddress [7]. Null when empty. */
export function subjectAltName(names: SubjectAltNames): Asn1 | null {
  const general: Asn1[] = [];
  for (const dns of names.dns ?? []) {
    if (!DNS_NAME.test(dns)) throw new CertError('CERT_OPTIONS_INVALID', `not a DNS name: ${dns}`);
    general.push(implicitPrimitive(2, Buffer.from(dns, 'ascii')));
  }
  for (const uri of names.uris ?? []) {
    if (!URI.test(uri)) throw new CertError('CERT_OPTIONS_INVALID', `not an ASCII URI: ${uri}`);
    general.push(implicitPrimitive(6, Buffer.from(uri, 'ascii')));
  }
  for (const ip of names.ips ?? []) general.push(implicitPrimitive(7, ipAddressBytes(ip)));
  if (general.length === 0) return null;
  return extension(EXTENSION_OIDS.subjectAltName, false, sequence(general));
}

/** §4.2.1.6: four octets for IPv4, sixteen for IPv6, network byte order. */
export function ipAddressBytes(ip: string): Buffer {
  const family = isIP(ip);
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  if (family !== 6 || ip.includes('%'))
    throw new CertError('CERT_OPTIONS_INVALID', `not an IP address: ${ip}`);
  let text = ip;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const before = head === '' ? [] : head.split(':');
  const after = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? before
      : [...before, ...new Array<string>(8 - before.length - after.length).fill('0'), ...after];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}

// Owns the DER building blocks X.509 needs (RFC 5280 §4.1, X.690 §10), on node-forge's asn1 codec.
import forge from 'node-forge';
import { CertError } from './errors.ts';

const { asn1 } = forge;
const UNIVERSAL = asn1.Class.UNIVERSAL;
const CONTEXT = asn1.Class.CONTEXT_SPECIFIC;
const T = asn1.Type;

export type Asn1 = forge.asn1.Asn1;

/** forge works on "binary strings" (one char per byte); these two convert at the boundary. */
export const toBinary = (data: Uint8Array): string =>
  Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
export const fromBinary = (data: string): Buffer => Buffer.from(data, 'latin1');

export const encode = (node: Asn1): Buffer => fromBinary(asn1.toDer(node).getBytes());

/** forge's fromDer takes an options object; its typings still describe the older boolean argument. */
const fromDer = asn1.fromDer as unknown as (
  bytes: string,
  options: { strict: boolean; decodeBitStrings: boolean; parseAllBytes: boolean },
) => Asn1;

/**
 * Parses DER without forge's guess that a BIT STRING may hold nested ASN.1, so that a public key or
 * signature is kept as the bytes it is; trailing bytes are an error.
 */
export const decode = (der: Uint8Array): Asn1 =>
  fromDer(toBinary(der), { strict: true, decodeBitStrings: false, parseAllBytes: true });

export const sequence = (items: Asn1[]): Asn1 => asn1.create(UNIVERSAL, T.SEQUENCE, true, items);
export const set = (items: Asn1[]): Asn1 => asn1.create(UNIVERSAL, T.SET, true, items);
export const boolean = (value: boolean): Asn1 =>
  asn1.create(UNIVERSAL, T.BOOLEAN, false, value ? '\xff' : '\x00');
export const octetString = (value: Uint8Array): Asn1 =>
  asn1.create(UNIVERSAL, T.OCTETSTRING, false, toBinary(value));
export const utf8String = (value: string): Asn1 =>
  asn1.create(UNIVERSAL, T.UTF8, false, Buffer.from(value, 'utf8').toString('latin1'));
/** An OCTET STRING wrapping the DER of another value (extnValue, RFC 5280 §4.1). */
export const derInOctetString = (inner: Asn1): Asn1 =>
  asn1.create(UNIVERSAL, T.OCTETSTRING, false, asn1.toDer(inner).getBytes());
export const explicit = (tag: number, inner: Asn1): Asn1 => asn1.create(CONTEXT, tag, true, [inner]);
/** A context-specific primitive, for IMPLICIT tagging of a string type (GeneralName, keyIdentifier). */
export const implicitPrimitive = (tag: number, value: Uint8Array): Asn1 =>
  asn1.create(CONTEXT, tag, false, toBinary(value));

/** A BIT STRING whose bits are all used (public keys, signatures). */
export const bitString = (value: Uint8Array): Asn1 =>
  asn1.create(UNIVERSAL, T.BITSTRING, false, `\x00${toBinary(value)}`);

/** X.690 §11.2.2: a named-bit BIT STRING drops trailing zero bits and counts them as unused. */
export function namedBits(bits: readonly number[]): Asn1 {
  const highest = Math.max(-1, ...bits);
  if (highest < 0) return asn1.create(UNIVERSAL, T.BITSTRING, false, '\x00');
  const octets = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) octets[bit >> 3]! |= 0x80 >> (bit & 7);
  const unused = 7 - (highest & 7);
  return asn1.create(UNIVERSAL, T.BITSTRING, false, String.fromCharCode(unused) + toBinary(octets));
}

const oidCache = new Map<string, string>();
export function oid(dotted: string): Asn1 {
  let der = oidCache.get(dotted);
  if (der === undefined) {
    der = asn1.oidToDer(dotted).getBytes();
    oidCache.set(dotted, der);
  }
  return asn1.create(UNIVERSAL, T.OID, false, der);
}
export const oidOf = (node: Asn1): string => asn1.derToOid(node.value as string);

/** A non-negative INTEGER from its big-endian magnitude, minimally encoded (X.690 §8.3.2). */
export function unsignedInteger(magnitude: Uint8Array): Asn1 {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  const body = trimmed.length === 0 ? Buffer.alloc(1) : trimmed;
  const needsPad = (body[0]! & 0x80) !== 0;
  return asn1.create(UNIVERSAL, T.INTEGER, false, (needsPad ? '\x00' : '') + toBinary(body));
}

export function smallInteger(value: number | bigint): Asn1 {
  const n = BigInt(value);
  if (n < 0n) throw new CertError('CERT_OPTIONS_INVALID', `negative INTEGER ${n}`);
  const hex = n.toString(16);
  return unsignedInteger(Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex'));
}

/**
 * RFC 5280 §4.1.2.5: dates through 2049 as UTCTime, from 2050 as GeneralizedTime, both in whole
 * seconds with Z.
 */
export function time(date: Date): Asn1 {
  const year = date.getUTCFullYear();
  if (Number.isNaN(date.getTime()) || year < 1950 || year > 9999) {
    throw new CertError('CERT_OPTIONS_INVALID', `date out of X.509 range: ${String(date)}`);
  }
  return year < 2050
    ? asn1.create(UNIVERSAL, T.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(UNIVERSAL, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

const OID_COMMON_NAME = '2.5.4.3';
/** RFC 5280 §4.2.1.4 ub-common-name. */
const MAX_COMMON_NAME = 64;

/** A Name holding one RDN with one commonName, as UTF8String (RFC 5280 §4.1.2.6). */
export function commonNameOnly(commonName: string): Asn1 {
  if (commonName.length === 0 || commonName.length > MAX_COMMON_NAME) {
    throw new CertError('CERT_OPTIONS_INVALID', `commonName must be 1..${MAX_COMMON_NAME} characters`);
  }
  return sequence([set([sequence([oid(OID_COMMON_NAME), utf8String(commonName)])])]);
}

/** Every commonName value in a Name, decoded from whichever string type carries it. */
export function commonNamesOf(name: Asn1): string[] {
  const names: string[] = [];
  for (const rdn of name.value as Asn1[]) {
    for (const attribute of rdn.value as Asn1[]) {
      const [type, value] = attribute.value as Asn1[];
      if (type === undefined || value === undefined || oidOf(type) !== OID_COMMON_NAME) continue;
      const raw = fromBinary(value.value as string);
      if (value.type === T.UTF8) names.push(raw.toString('utf8'));
      else if (value.type === T.PRINTABLESTRING || value.type === T.IA5STRING)
        names.push(raw.toString('latin1'));
      else names.push(''); // an odd string type still counts, so a second CN cannot hide behind it
    }
  }
  return names;
}

export const AsnClass = asn1.Class;
export const AsnType = T;

/** RFC 7468 textual encoding: base64 in 64-character lines between BEGIN/END labels. */
export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The DER inside the first PEM block with this label, or null. */
export function fromPem(label: string, pem: string): Buffer | null {
  const match = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  return match ? Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64') : null;
}

// Owns P-256 key pairs in the encodings certificates and key files need (RFC 5480, RFC 5915, RFC 5208).
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  type Asn1,
  bitString,
  derInOctetString,
  encode,
  explicit,
  octetString,
  oid,
  sequence,
  smallInteger,
  toPem,
} from './der.ts';

/** The only curve this PKI issues or signs with. */
export const CURVE = 'prime256v1';
const ID_EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const PRIME256V1 = '1.2.840.10045.3.1.7';
const COORDINATE_BYTES = 32;

export interface P256KeyPair {
  privateKey: KeyObject;
  /** The uncompressed point 04 || X || Y (SEC 1 §2.3.3). */
  point: Buffer;
  /** PKCS#8 PEM, as privateKey.export({ type: 'pkcs8', format: 'pem' }) writes it. */
  privateKeyPem: string;
}

/** RFC 5480 §2.1.1: id-ecPublicKey with the named curve as parameters. */
const algorithm = (): Asn1 => sequence([oid(ID_EC_PUBLIC_KEY), oid(PRIME256V1)]);

/** RFC 5480 §2: SubjectPublicKeyInfo for a P-256 point. */
export const subjectPublicKeyInfo = (point: Uint8Array): Asn1 => sequence([algorithm(), bitString(point)]);

/** RFC 5208 §5 PrivateKeyInfo around RFC 5915 §3 ECPrivateKey (curve in the outer algorithm only). */
function pkcs8(secret: Uint8Array, point: Uint8Array): Buffer {
  const ecPrivateKey = sequence([smallInteger(1), octetString(secret), explicit(1, bitString(point))]);
  return encode(sequence([smallInteger(0), algorithm(), derInOctetString(ecPrivateKey)]));
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits, here the point. */
export const keyIdentifierOf = (point: Uint8Array): Buffer => createHash('sha1').update(point).digest();

function coordinate(base64url: string | undefined): Buffer {
  const bytes = Buffer.from(base64url ?? '', 'base64url');
  // An invariant of node:crypto's P-256 JWK export, not an input that could be refused.
  if (bytes.length === 0 || bytes.length > COORDINATE_BYTES)
    throw new Error('unexpected P-256 JWK coordinate');
  return Buffer.concat([Buffer.alloc(COORDINATE_BYTES - bytes.length), bytes]);
}

/**
 * A fresh P-256 key pair. The encodings are built here from the JWK export because OpenSSL 3's
 * SPKI and PKCS#8 encoders cost several times the key generation itself; the test suite checks the
 * bytes against Node's own export.
 */
export function generateP256(): P256KeyPair {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: CURVE });
  const jwk = privateKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([0x04]), coordinate(jwk.x), coordinate(jwk.y)]);
  return { privateKey, point, privateKeyPem: toPem('PRIVATE KEY', pkcs8(coordinate(jwk.d), point)) };
}

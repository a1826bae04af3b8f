// Owns a loaded CA: its key, name and key id parsed once, and ecdsa-with-SHA256 signing (RFC 5758 §3.2).
import { createPrivateKey, type KeyObject, sign, X509Certificate } from 'node:crypto';
import { type Asn1, bitString, encode, fromBinary, oid, sequence } from './der.ts';
import { CertError } from './errors.ts';
import { inspectCertificate, subjectKeyIdOf } from './inspect.ts';
import { CURVE, keyIdentifierOf } from './keys.ts';

export const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

/** A CA certificate and its private key, both PEM. */
export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

export interface CaSigner {
  readonly certPem: string;
  readonly certificate: X509Certificate;
  /** The CA's subject Name as encoded in its certificate: the issuer of everything it signs. */
  readonly name: Asn1;
  /** The CA's subjectKeyIdentifier, written as authorityKeyIdentifier of what it signs. */
  readonly keyId: Buffer;
  /** DER of SEQUENCE { tbs, signatureAlgorithm, signatureValue } (RFC 5280 §4.1.1, §5.1.1). */
  sign(tbs: Asn1): Buffer;
}

/** RFC 5758 §3.2: ecdsa-with-SHA256 has its parameters field absent. */
export const signatureAlgorithm = (): Asn1 => sequence([oid(ECDSA_WITH_SHA256)]);

/** Refuses any key but P-256, so that the signature algorithm written is the one used. */
export function assertP256(key: KeyObject, what: string): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== CURVE) {
    throw new CertError('CA_KEY_UNSUPPORTED', `${what} must be an EC ${CURVE} key`);
  }
}

export function signStructure(tbs: Asn1, key: KeyObject): Buffer {
  const tbsDer = encode(tbs);
  // node:crypto returns the DER Ecdsa-Sig-Value that RFC 5480 §2.2 puts in the BIT STRING.
  const signature = sign('sha256', tbsDer, key);
  return encode(sequence([tbs, signatureAlgorithm(), bitString(signature)]));
}

export function loadCa(ca: CaMaterial): CaSigner {
  let certificate: X509Certificate;
  let key: KeyObject;
  try {
    certificate = new X509Certificate(ca.certPem);
    key = createPrivateKey(ca.keyPem);
  } catch (error) {
    throw new CertError('CA_MALFORMED', `CA certificate or key unreadable: ${(error as Error).message}`);
  }
  assertP256(key, 'the CA key');
  if (!certificate.ca)
    throw new CertError('CA_NOT_A_CA', `${certificate.subject.trim()} is not a CA certificate`);
  if (!certificate.checkPrivateKey(key))
    throw new CertError('CA_KEY_MISMATCH', 'CA key does not match CA certificate');
  const inspected = inspectCertificate(certificate.raw);
  // A CA made elsewhere may lack subjectKeyIdentifier; derive it the way §4.2.1.2 (1) does.
  const subjectPublicKey = (inspected.subjectPublicKeyInfo.value as Asn1[])[1];
  const keyId =
    subjectKeyIdOf(inspected) ??
    keyIdentifierOf(fromBinary((subjectPublicKey?.value as string | undefined) ?? '\x00').subarray(1));
  return {
    certPem: ca.certPem,
    certificate,
    name: inspected.subject,
    keyId,
    sign: (tbs) => signStructure(tbs, key),
  };
}

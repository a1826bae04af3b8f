// Owns issuing X.509 v3 certificates with EC P-256 keys: the self-signed CA and the leaves it signs.
import { randomBytes } from 'node:crypto';
import {
  type Asn1,
  commonNameOnly,
  explicit,
  sequence,
  smallInteger,
  time,
  toPem,
  unsignedInteger,
} from './der.ts';
import { CertError } from './errors.ts';
import {
  authorityKeyIdentifier,
  basicConstraints,
  type ExtendedKeyUsage,
  extendedKeyUsage,
  keyUsage,
  type SubjectAltNames,
  subjectAltName,
  subjectKeyIdentifier,
} from './extensions.ts';
import { generateP256, keyIdentifierOf, subjectPublicKeyInfo } from './keys.ts';
import { type CaMaterial, loadCa, signatureAlgorithm, signStructure } from './signer.ts';

/** Certificates start this far in the past, so a peer whose clock runs a little slow accepts them. */
export const BACKDATE_MS = 5 * 60_000;
export const DEFAULT_CA_LIFETIME_MS = 10 * 365 * 86_400_000;
export const DEFAULT_LEAF_LIFETIME_MS = 365 * 86_400_000;

export interface IssuedCertificate {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  /** Upper-case hex, as X509Certificate.serialNumber prints it. */
  serial: string;
}

export interface ValidityOptions {
  /** Defaults to now() minus BACKDATE_MS. */
  notBefore?: Date;
  /** Defaults to notBefore plus the default lifetime. */
  notAfter?: Date;
  now?: () => Date;
}

export interface CreateCaOptions extends ValidityOptions {
  commonName: string;
}

export interface IssueOptions extends ValidityOptions, SubjectAltNames {
  commonName: string;
  /** Defaults to ['clientAuth']; an empty list leaves the extension out (any purpose). */
  extendedKeyUsage?: readonly ExtendedKeyUsage[];
}

export interface Issuer {
  readonly caCertPem: string;
  issue(options: IssueOptions): IssuedCertificate;
}

interface TbsInput {
  serial: Buffer;
  issuer: Asn1;
  subject: Asn1;
  notBefore: Date;
  notAfter: Date;
  /** The uncompressed public point. */
  point: Buffer;
  extensions: Asn1[];
}

/** RFC 5280 §4.1.2.2: positive, at most 20 octets; 16 random octets with the top bit cleared and the next set keep DER minimal. */
function newSerial(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  return serial;
}

function validity(options: ValidityOptions, lifetimeMs: number): { notBefore: Date; notAfter: Date } {
  const now = options.now ?? (() => new Date());
  const notBefore = options.notBefore ?? new Date(now().getTime() - BACKDATE_MS);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + lifetimeMs);
  if (!(notAfter.getTime() > notBefore.getTime())) {
    throw new CertError('CERT_OPTIONS_INVALID', 'notAfter must be later than notBefore');
  }
  return { notBefore, notAfter };
}

/** RFC 5280 §4.1: TBSCertificate, always v3. */
function tbsCertificate(input: TbsInput): Asn1 {
  return sequence([
    explicit(0, smallInteger(2)),
    unsignedInteger(input.serial),
    signatureAlgorithm(),
    input.issuer,
    sequence([time(input.notBefore), time(input.notAfter)]),
    input.subject,
    subjectPublicKeyInfo(input.point),
    explicit(3, sequence(input.extensions)),
  ]);
}

/** A self-signed root that may sign leaves only (pathLenConstraint 0). */
export function createCa(options: CreateCaOptions): IssuedCertificate {
  const { notBefore, notAfter } = validity(options, DEFAULT_CA_LIFETIME_MS);
  const keys = generateP256();
  const keyId = keyIdentifierOf(keys.point);
  const name = commonNameOnly(options.commonName);
  const serial = newSerial();
  const tbs = tbsCertificate({
    serial,
    issuer: name,
    subject: name,
    notBefore,
    notAfter,
    point: keys.point,
    extensions: [
      basicConstraints(true, 0),
      keyUsage(['keyCertSign', 'cRLSign']),
      subjectKeyIdentifier(keyId),
      authorityKeyIdentifier(keyId),
    ],
  });
  return {
    certPem: toPem('CERTIFICATE', signStructure(tbs, keys.privateKey)),
    keyPem: keys.privateKeyPem,
    serial: serial.toString('hex').toUpperCase(),
  };
}

/** Parses the CA once; issue() then costs one key generation and one signature. */
export function createIssuer(ca: CaMaterial): Issuer {
  const signer = loadCa(ca);
  const authorityKeyId = authorityKeyIdentifier(signer.keyId);
  return {
    caCertPem: signer.certPem,
    issue(options) {
      const { notBefore, notAfter } = validity(options, DEFAULT_LEAF_LIFETIME_MS);
      const san = subjectAltName(options);
      const usages = options.extendedKeyUsage ?? ['clientAuth'];
      const keys = generateP256();
      const serial = newSerial();
      const extensions = [
        basicConstraints(false),
        // ECDHE key exchange needs only signatures from the certificate key (RFC 8446 §4.4.3).
        keyUsage(['digitalSignature']),
        ...(usages.length > 0 ? [extendedKeyUsage(usages)] : []),
        subjectKeyIdentifier(keyIdentifierOf(keys.point)),
        authorityKeyId,
        ...(san ? [san] : []),
      ];
      const tbs = tbsCertificate({
        serial,
        issuer: signer.name,
        subject: commonNameOnly(options.commonName),
        notBefore,
        notAfter,
        point: keys.point,
        extensions,
      });
      return {
        certPem: toPem('CERTIFICATE', signer.sign(tbs)),
        keyPem: keys.privateKeyPem,
        serial: serial.toString('hex').toUpperCase(),
      };
    },
  };
}

/** One-off issuance; for many certificates, createIssuer(ca) once and call issue(). */
export function issueCertificate(options: IssueOptions & { ca: CaMaterial }): IssuedCertificate {
  const { ca, ...rest } = options;
  return createIssuer(ca).issue(rest);
}

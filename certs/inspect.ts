// Owns reading the fields this PKI relies on back out of a DER certificate (RFC 5280 §4.1, §4.2.1.6).
import { type Asn1, AsnClass, AsnType, commonNamesOf, decode, fromBinary, oidOf } from './der.ts';
import { CertError } from './errors.ts';
import { EXTENSION_OIDS } from './extensions.ts';

export interface CertificateExtension {
  critical: boolean;
  /** The DER inside extnValue. */
  value: Buffer;
}

export interface InspectedCertificate {
  /** Upper-case hex, as X509Certificate.serialNumber prints it. */
  serial: string;
  /** The subject Name exactly as encoded, to be reused as the issuer of certificates this one signs. */
  subject: Asn1;
  subjectCommonNames: string[];
  subjectPublicKeyInfo: Asn1;
  extensions: ReadonlyMap<string, CertificateExtension>;
}

export type GeneralName =
  | { type: 'dns'; value: string }
  | { type: 'uri'; value: string }
  | { type: 'ip'; value: Buffer }
  | { type: 'other'; tag: number };

const malformed = (why: string): CertError => new CertError('CERT_MALFORMED', `certificate: ${why}`);
const children = (node: Asn1 | undefined, what: string): Asn1[] => {
  if (node === undefined || !Array.isArray(node.value)) throw malformed(`${what} missing`);
  return node.value;
};

export function inspectCertificate(der: Uint8Array): InspectedCertificate {
  let root: Asn1;
  try {
    root = decode(der);
  } catch (error) {
    throw malformed(`not DER (${(error as Error).message})`);
  }
  const tbs = children(children(root, 'Certificate')[0], 'tbsCertificate');
  // version [0] EXPLICIT is absent for v1 certificates, shifting every later field.
  const first = tbs[0];
  const at = first !== undefined && first.tagClass === AsnClass.CONTEXT_SPECIFIC && first.type === 0 ? 1 : 0;
  const serial = tbs[at];
  const subject = tbs[at + 4];
  const spki = tbs[at + 5];
  if (serial?.type !== AsnType.INTEGER || subject === undefined || spki === undefined)
    throw malformed('fields missing');
  const extensions = new Map<string, CertificateExtension>();
  for (const node of tbs.slice(at + 6)) {
    if (node.tagClass !== AsnClass.CONTEXT_SPECIFIC || node.type !== 3) continue;
    for (const ext of children(children(node, 'extensions')[0], 'Extensions')) {
      const parts = children(ext, 'Extension');
      const id = oidOf(parts[0]!);
      const critical = parts.length === 3 && parts[1]!.value === '\xff';
      const value = parts[parts.length - 1]!;
      // §4.2: a certificate MUST NOT include more than one instance of a particular extension.
      if (extensions.has(id)) throw malformed(`duplicate extension ${id}`);
      extensions.set(id, { critical, value: fromBinary(value.value as string) });
    }
  }
  let serialHex = fromBinary(serial.value as string)
    .toString('hex')
    .toUpperCase();
  if (serialHex.startsWith('00') && serialHex.length > 2) serialHex = serialHex.slice(2);
  return {
    serial: serialHex,
    subject,
    subjectCommonNames: commonNamesOf(subject),
    subjectPublicKeyInfo: spki,
    extensions,
  };
}

/** GeneralNames from a subjectAltName extnValue; kinds this PKI never writes come back as 'other'. */
export function generalNamesOf(extnValue: Uint8Array): GeneralName[] {
  return children(decode(extnValue), 'GeneralNames').map((name): GeneralName => {
    if (name.tagClass !== AsnClass.CONTEXT_SPECIFIC || name.constructed)
      return { type: 'other', tag: name.type };
    const raw = fromBinary(name.value as string);
    if (name.type === 2) return { type: 'dns', value: raw.toString('latin1') };
    if (name.type === 6) return { type: 'uri', value: raw.toString('latin1') };
    if (name.type === 7) return { type: 'ip', value: raw };
    return { type: 'other', tag: name.type };
  });
}

export function subjectAltNamesOf(cert: InspectedCertificate): GeneralName[] {
  const san = cert.extensions.get(EXTENSION_OIDS.subjectAltName);
  return san ? generalNamesOf(san.value) : [];
}

/** keyIdentifier of a subjectKeyIdentifier extension, or null when absent. */
export function subjectKeyIdOf(cert: InspectedCertificate): Buffer | null {
  const ski = cert.extensions.get(EXTENSION_OIDS.subjectKeyIdentifier);
  return ski ? fromBinary(decode(ski.value).value as string) : null;
}

import { createPrivateKey, createPublicKey, generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { type CliIo, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, progressBar, runCli } from '../certs/cli.ts';
import { type Asn1, AsnType, decode, encode, fromBinary, fromPem, oidOf, toPem } from '../certs/der.ts';
import {
  CertError,
  type CertErrorCode,
  createCa,
  createCrl,
  createIssuer,
  DEFAULT_MOSQUITTO_PORT,
  devPkiPaths,
  EXTENDED_KEY_USAGE_OIDS,
  EXTENSION_OIDS,
  ensureDevPki,
  gatewayNameFromCertificate,
  generateP256,
  type IssuedCertificate,
  inspectCertificate,
  ipAddressBytes,
  issueCertificate,
  issueFleet,
  issueVehicleIdentity,
  loadDevPki,
  mosquittoAcl,
  mosquittoFiles,
  RevocationStateSchema,
  readCrl,
  reissueVehicle,
  revokeVehicle,
  serialKey,
  subjectPublicKeyInfo,
  syntheticVin,
  vinFromCertificate,
} from '../certs/index.ts';
import { kidFor, TrustedKeysFileSchema } from '../protocols/keys.ts';
import { MAX_PACKET_BYTES } from '../protocols/messages.ts';
import { vinProblem } from '../protocols/vin.ts';

const VIN = '1G1ZE5ST5KF100231';
const OTHER_VIN = '1GNSKBKC3FR200114';
const THIRD_VIN = 'YV1A22MK3F1900345';
const NOW = new Date('2030-06-01T12:00:00Z');
const frozen = () => NOW;
const DAY = 86_400_000;

const temporaryDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'certs-test-'));
  temporaryDirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of temporaryDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function codeOf(fn: () => unknown): CertErrorCode | 'no error' {
  try {
    fn();
  } catch (error) {
    if (error instanceof CertError) return error.code;
    throw error;
  }
  return 'no error';
}

async function asyncCodeOf(fn: () => Promise<unknown>): Promise<CertErrorCode | 'no error'> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof CertError) return error.code;
    throw error;
  }
  return 'no error';
}

const x509 = (pem: string) => new X509Certificate(pem);
const extensionHex = (pem: string, oid: string) => {
  const ext = inspectCertificate(x509(pem).raw).extensions.get(oid);
  return ext ? { critical: ext.critical, der: ext.value.toString('hex') } : undefined;
};
/** The ASN.1 tags of notBefore and notAfter: 23 UTCTime, 24 GeneralizedTime. */
const validityTags = (pem: string): number[] => {
  const tbs = (decode(x509(pem).raw).value as Asn1[])[0]!.value as Asn1[];
  return ((tbs[4]!.value as Asn1[]) ?? []).map((t) => t.type);
};

describe('certificate structure', () => {
  const ca = createCa({ commonName: 'Test Root', now: frozen });
  const issuer = createIssuer(ca);

  it('makes a self-signed P-256 CA limited to signing leaves', () => {
    const cert = x509(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=Test Root');
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.serialNumber).toBe(ca.serial);
    // basicConstraints critical { cA TRUE, pathLen 0 }; keyUsage critical keyCertSign|cRLSign.
    expect(extensionHex(ca.certPem, EXTENSION_OIDS.basicConstraints)).toEqual({
      critical: true,
      der: '30060101ff020100',
    });
    expect(extensionHex(ca.certPem, EXTENSION_OIDS.keyUsage)).toEqual({ critical: true, der: '03020106' });
    expect(extensionHex(ca.certPem, EXTENSION_OIDS.extKeyUsage)).toBeUndefined();
    const ski = extensionHex(ca.certPem, EXTENSION_OIDS.subjectKeyIdentifier);
    const aki = extensionHex(ca.certPem, EXTENSION_OIDS.authorityKeyIdentifier);
    expect(aki?.der).toBe(`30168014${ski?.der.slice(4)}`);
  });

  it('backdates notBefore by five minutes and honours an explicit notAfter', () => {
    const cert = x509(ca.certPem);
    expect(Date.parse(cert.validFrom)).toBe(NOW.getTime() - 5 * 60_000);
    expect(Date.parse(cert.validTo)).toBe(NOW.getTime() - 5 * 60_000 + 10 * 365 * DAY);
    const leaf = issuer.issue({ commonName: 'x', notAfter: new Date('2031-01-02T03:04:05Z'), now: frozen });
    expect(Date.parse(x509(leaf.certPem).validTo)).toBe(Date.parse('2031-01-02T03:04:05Z'));
  });

  it('writes UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280 §4.1.2.5)', () => {
    const leaf = issuer.issue({
      commonName: 'long',
      notBefore: new Date('2049-12-31T23:59:59Z'),
      notAfter: new Date('2050-01-01T00:00:00Z'),
    });
    expect(validityTags(leaf.certPem)).toEqual([AsnType.UTCTIME, AsnType.GENERALIZEDTIME]);
    const cert = x509(leaf.certPem);
    expect(Date.parse(cert.validFrom)).toBe(Date.parse('2049-12-31T23:59:59Z'));
    expect(Date.parse(cert.validTo)).toBe(Date.parse('2050-01-01T00:00:00Z'));
  });

  it('issues a broker certificate for serverAuth with DNS and IP names', () => {
    const broker = issuer.issue({
      commonName: 'broker',
      dns: ['localhost'],
      ips: ['127.0.0.1', '::1'],
      extendedKeyUsage: ['serverAuth'],
      now: frozen,
    });
    const cert = x509(broker.certPem);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(x509(ca.certPem))).toBe(true);
    expect(cert.verify(x509(ca.certPem).publicKey)).toBe(true);
    expect(cert.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('::1')).toBe('::1');
    // Node names the extendedKeyUsage list keyUsage.
    expect(cert.keyUsage).toEqual([EXTENDED_KEY_USAGE_OIDS.serverAuth]);
    expect(extensionHex(broker.certPem, EXTENSION_OIDS.basicConstraints)).toEqual({
      critical: true,
      der: '3000',
    });
    expect(extensionHex(broker.certPem, EXTENSION_OIDS.keyUsage)).toEqual({
      critical: true,
      der: '03020780',
    });
    expect(extensionHex(broker.certPem, EXTENSION_OIDS.extKeyUsage)?.critical).toBe(false);
    const aki = extensionHex(broker.certPem, EXTENSION_OIDS.authorityKeyIdentifier)?.der;
    const caSki = extensionHex(ca.certPem, EXTENSION_OIDS.subjectKeyIdentifier)?.der;
    expect(aki).toBe(`30168014${caSki?.slice(4)}`);
    expect(x509(broker.certPem).checkPrivateKey(createPrivateKey(broker.keyPem))).toBe(true);
  });

  it('issues vehicle identities with CN = VIN, SAN urn:vin:VIN and EKU clientAuth', () => {
    const car = issueVehicleIdentity(issuer, VIN, { now: frozen });
    const cert = x509(car.certPem);
    expect(cert.subject).toBe(`CN=${VIN}`);
    expect(cert.subjectAltName).toBe(`URI:urn:vin:${VIN}`);
    expect(cert.keyUsage).toEqual([EXTENDED_KEY_USAGE_OIDS.clientAuth]);
    expect(cert.verify(x509(ca.certPem).publicKey)).toBe(true);
  });

  it('leaves extendedKeyUsage out when asked, or writes the one given', () => {
    const none = issueVehicleIdentity(issuer, VIN, { extendedKeyUsage: [] });
    expect(x509(none.certPem).keyUsage).toBeUndefined();
    expect(extensionHex(none.certPem, EXTENSION_OIDS.extKeyUsage)).toBeUndefined();
    const server = issueVehicleIdentity(issuer, VIN, { extendedKeyUsage: ['serverAuth'] });
    expect(x509(server.certPem).keyUsage).toEqual([EXTENDED_KEY_USAGE_OIDS.serverAuth]);
  });

  it('encodes key pairs byte for byte as node:crypto does (PKCS#8, SPKI)', () => {
    for (let i = 0; i < 25; i++) {
      const keys = generateP256();
      expect(keys.privateKeyPem).toBe(keys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
      expect(encode(subjectPublicKeyInfo(keys.point))).toEqual(
        createPublicKey(keys.privateKey).export({ type: 'spki', format: 'der' }),
      );
    }
    const leaf = issuer.issue({ commonName: 'pair' });
    expect(x509(leaf.certPem).checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);
  });

  it('gives every certificate a random positive 16-byte serial, reported as Node prints it', () => {
    const serials = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const leaf = issuer.issue({ commonName: 'serial' });
      expect(leaf.serial).toMatch(/^[4-7][0-9A-F]{31}$/);
      expect(x509(leaf.certPem).serialNumber).toBe(leaf.serial);
      serials.add(leaf.serial);
    }
    expect(serials.size).toBe(50);
  });

  it('issueCertificate is the one-off form of createIssuer().issue()', () => {
    const leaf = issueCertificate({ ca, commonName: 'one-off', dns: ['example.test'] });
    expect(x509(leaf.certPem).checkIssued(x509(ca.certPem))).toBe(true);
    expect(x509(leaf.certPem).keyUsage).toEqual([EXTENDED_KEY_USAGE_OIDS.clientAuth]);
  });

  it('encodes IP addresses the way RFC 5280 §4.2.1.6 says', () => {
    expect(ipAddressBytes('192.0.2.7').toString('hex')).toBe('c0000207');
    expect(ipAddressBytes('::1').toString('hex')).toBe(`${'0'.repeat(30)}01`);
    expect(ipAddressBytes('::').toString('hex')).toBe('0'.repeat(32));
    expect(ipAddressBytes('2001:db8::8a2e:370:7334').toString('hex')).toBe(
      '20010db8000000000000' + '8a2e03707334',
    );
    expect(ipAddressBytes('::ffff:192.0.2.1').toString('hex')).toBe(`${'0'.repeat(20)}ffffc0000201`);
    expect(ipAddressBytes('fe80::').toString('hex')).toBe(`fe80${'0'.repeat(28)}`);
    expect(codeOf(() => ipAddressBytes('fe80::1%eth0'))).toBe('CERT_OPTIONS_INVALID');
    expect(codeOf(() => ipAddressBytes('localhost'))).toBe('CERT_OPTIONS_INVALID');
  });

  it('refuses bad options with a code', () => {
    expect(codeOf(() => issuer.issue({ commonName: 'x', notBefore: NOW, notAfter: NOW }))).toBe(
      'CERT_OPTIONS_INVALID',
    );
    expect(codeOf(() => issuer.issue({ commonName: '' }))).toBe('CERT_OPTIONS_INVALID');
    expect(codeOf(() => issuer.issue({ commonName: 'x', dns: ['bad name'] }))).toBe('CERT_OPTIONS_INVALID');
    expect(codeOf(() => issuer.issue({ commonName: 'x', uris: ['no scheme'] }))).toBe('CERT_OPTIONS_INVALID');
    expect(codeOf(() => issuer.issue({ commonName: 'x', ips: ['300.1.1.1'] }))).toBe('CERT_OPTIONS_INVALID');
    expect(codeOf(() => issuer.issue({ commonName: 'x', notBefore: new Date('1949-12-31T00:00:00Z') }))).toBe(
      'CERT_OPTIONS_INVALID',
    );
    expect(codeOf(() => issueVehicleIdentity(issuer, '1G1ZE5ST5KF100232'))).toBe('VIN_INVALID');
    expect(codeOf(() => issueVehicleIdentity(issuer, '../../etc/passwd'))).toBe('VIN_INVALID');
  });

  it('refuses a CA that is not one, whose key does not match, or whose key is not P-256', () => {
    const other = createCa({ commonName: 'Other' });
    const leaf = issuer.issue({ commonName: 'leaf' });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    expect(codeOf(() => createIssuer({ certPem: ca.certPem, keyPem: other.keyPem }))).toBe('CA_KEY_MISMATCH');
    expect(codeOf(() => createIssuer(leaf))).toBe('CA_NOT_A_CA');
    expect(codeOf(() => createIssuer({ certPem: ca.certPem, keyPem: rsa }))).toBe('CA_KEY_UNSUPPORTED');
    expect(codeOf(() => createIssuer({ certPem: 'nonsense', keyPem: ca.keyPem }))).toBe('CA_MALFORMED');
  });
});

describe('vinFromCertificate', () => {
  const ca = createCa({ commonName: 'VIN CA' });
  const issuer = createIssuer(ca);
  const forged = (commonName: string, uris: string[]) => x509(issuer.issue({ commonName, uris }).certPem);

  it('returns the VIN when CN and the urn:vin: URI agree', () => {
    expect(vinFromCertificate(x509(issueVehicleIdentity(issuer, VIN).certPem))).toBe(VIN);
    expect(vinFromCertificate(forged(VIN, ['https://example.test/car', `urn:vin:${VIN}`]))).toBe(VIN);
  });

  it.each([
    ['a different VIN in the SAN', VIN, [`urn:vin:${OTHER_VIN}`]],
    ['no SAN at all', VIN, []],
    ['no urn:vin: URI', VIN, ['https://example.test/car']],
    ['the URI twice', VIN, [`urn:vin:${VIN}`, `urn:vin:${VIN}`]],
    ['a second, different VIN URI', VIN, [`urn:vin:${VIN}`, `urn:vin:${OTHER_VIN}`]],
    ['an upper-case URN', VIN, [`URN:VIN:${VIN}`]],
    ['a CN that is not a VIN', 'gateway', ['urn:vin:gateway']],
    ['a lower-case CN', VIN.toLowerCase(), [`urn:vin:${VIN.toLowerCase()}`]],
  ])('refuses %s', (_why, commonName, uris) => {
    expect(vinFromCertificate(forged(commonName, uris))).toBeNull();
  });

  it('tells the gateway from a car', () => {
    const gateway = x509(issuer.issue({ commonName: 'gateway', uris: ['urn:gateway:gateway'] }).certPem);
    expect(gatewayNameFromCertificate(gateway)).toBe('gateway');
    expect(vinFromCertificate(gateway)).toBeNull();
    expect(gatewayNameFromCertificate(x509(issueVehicleIdentity(issuer, VIN).certPem))).toBeNull();
    expect(gatewayNameFromCertificate(forged('gateway', ['urn:gateway:other']))).toBeNull();
  });
});

describe('createCrl', () => {
  const ca = createCa({ commonName: 'CRL CA', now: frozen });
  const caCert = x509(ca.certPem);

  function parseCrl(pem: string) {
    const der = fromPem('X509 CRL', pem);
    if (der === null) throw new Error('no CRL block');
    const [tbs, algorithm, signature] = decode(der).value as Asn1[];
    return { tbs: tbs!, fields: tbs!.value as Asn1[], algorithm: algorithm!, signature: signature! };
  }

  it('signs an X.509 v2 CRL with ecdsa-with-SHA256, AKI and cRLNumber', () => {
    const pem = createCrl({
      ca,
      revoked: [{ serial: '4ABC', revokedAt: NOW }],
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      crlNumber: 300,
    });
    const { tbs, fields, algorithm, signature } = parseCrl(pem);
    expect(oidOf((algorithm.value as Asn1[])[0]!)).toBe('1.2.840.10045.4.3.2');
    const ok = verify(
      'sha256',
      encode(tbs),
      caCert.publicKey,
      fromBinary(signature.value as string).subarray(1),
    );
    expect(ok).toBe(true);
    expect(fromBinary(fields[0]!.value as string).toString('hex')).toBe('01'); // v2
    const entries = fields[5]!.value as Asn1[];
    expect(entries).toHaveLength(1);
    expect(fromBinary((entries[0]!.value as Asn1[])[0]!.value as string).toString('hex')).toBe('4abc');
    const extensions = ((fields[6]!.value as Asn1[])[0]!.value as Asn1[]).map((ext) => {
      const parts = ext.value as Asn1[];
      return [oidOf(parts[0]!), fromBinary(parts[parts.length - 1]!.value as string).toString('hex')];
    });
    const caSki = extensionHex(ca.certPem, EXTENSION_OIDS.subjectKeyIdentifier)?.der.slice(4);
    expect(extensions).toEqual([
      [EXTENSION_OIDS.authorityKeyIdentifier, `30168014${caSki}`],
      [EXTENSION_OIDS.crlNumber, '0202012c'],
    ]);
  });

  it('leaves revokedCertificates out when nothing is revoked (RFC 5280 §5.1.2.6)', () => {
    const { fields } = parseCrl(
      createCrl({
        ca,
        revoked: [],
        thisUpdate: NOW,
        nextUpdate: new Date(NOW.getTime() + DAY),
        crlNumber: 1,
      }),
    );
    expect(fields).toHaveLength(6);
  });

  it('refuses a duplicate serial, a bad serial and an inverted window', () => {
    const base = { ca, thisUpdate: NOW, nextUpdate: new Date(NOW.getTime() + DAY), crlNumber: 1 };
    expect(
      codeOf(() =>
        createCrl({
          ...base,
          revoked: [
            { serial: '0A', revokedAt: NOW },
            { serial: 'a', revokedAt: NOW },
          ],
        }),
      ),
    ).toBe('CERT_OPTIONS_INVALID');
    expect(codeOf(() => createCrl({ ...base, revoked: [{ serial: 'xyz', revokedAt: NOW }] }))).toBe(
      'CERT_OPTIONS_INVALID',
    );
    expect(codeOf(() => createCrl({ ...base, nextUpdate: NOW, revoked: [] }))).toBe('CERT_OPTIONS_INVALID');
  });

  it('reads back what it wrote: serials, numbers and times, after checking the signature', () => {
    const pem = createCrl({
      ca,
      revoked: [
        { serial: '4ABC', revokedAt: NOW },
        { serial: '00ff', revokedAt: NOW },
      ],
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      crlNumber: 300,
    });
    const read = readCrl(pem, ca.certPem);
    expect(read.crlNumber).toBe(300n);
    expect(read.thisUpdate).toEqual(NOW);
    expect(read.nextUpdate).toEqual(new Date(NOW.getTime() + DAY));
    expect([...read.revoked].sort()).toEqual(['4ABC', 'FF']);
    const empty = readCrl(
      createCrl({
        ca,
        revoked: [],
        thisUpdate: NOW,
        nextUpdate: new Date(NOW.getTime() + DAY),
        crlNumber: 1,
      }),
      ca.certPem,
    );
    expect(empty.revoked.size).toBe(0);
  });

  it('spells every serial one way, whatever its case or leading zeros', () => {
    expect(serialKey('00ab')).toBe('AB');
    expect(serialKey('4aBc')).toBe('4ABC');
    expect(serialKey('0')).toBe('0');
    expect(codeOf(() => serialKey('xyz'))).toBe('CERT_OPTIONS_INVALID');
  });

  it('refuses a CRL that is not signed by the CA, tampered with, or not a CRL (CRL_INVALID)', () => {
    const options = {
      revoked: [{ serial: '4ABC', revokedAt: NOW }],
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      crlNumber: 2,
    };
    const other = createCa({ commonName: 'CRL CA', now: frozen });
    expect(codeOf(() => readCrl(createCrl({ ...options, ca: other }), ca.certPem))).toBe('CRL_INVALID');
    const der = fromPem('X509 CRL', createCrl({ ...options, ca })) as Buffer;
    // Revoke another serial without re-signing: the last byte of the entry's serial.
    const at = der.indexOf(Buffer.from([0x02, 0x02, 0x4a, 0xbc]));
    const tampered = Buffer.from(der);
    tampered[at + 3] = 0xbd;
    expect(codeOf(() => readCrl(toPem('X509 CRL', tampered), ca.certPem))).toBe('CRL_INVALID');
    expect(codeOf(() => readCrl('', ca.certPem))).toBe('CRL_INVALID');
    expect(codeOf(() => readCrl(toPem('X509 CRL', Buffer.from('3003020101', 'hex')), ca.certPem))).toBe(
      'CRL_INVALID',
    );
    expect(codeOf(() => readCrl(ca.certPem, ca.certPem))).toBe('CRL_INVALID');
  });
});

interface Peer {
  certPem: string;
  keyPem: string;
}

interface HandshakeOptions {
  server: Peer;
  /** The CA(s) the server trusts for client certificates. */
  clientCa: string;
  crl?: string;
  client?: Peer;
  /** The CA the client trusts for the server certificate. */
  serverCa: string;
  servername?: string;
  /** false only to read why a client would be refused (authorizationError). */
  rejectUnauthorized?: boolean;
}

interface HandshakeResult {
  /** The server's connection listener ran with an authorized client. */
  authorized: boolean;
  /** What OpenSSL said about the client certificate, when the server let the handshake finish. */
  authorizationError: string | null;
  protocol: string | null;
  /** The server emitted tlsClientError: it refused the client. */
  refused: boolean;
  /** What the client read before the connection closed. */
  received: string;
}

/** A real mTLS handshake over 127.0.0.1 with the broker's settings: TLS 1.3, client certificate required. */
async function handshake(options: HandshakeOptions): Promise<HandshakeResult> {
  const result: HandshakeResult = {
    authorized: false,
    authorizationError: null,
    protocol: null,
    refused: false,
    received: '',
  };
  const server = tls.createServer(
    {
      key: options.server.keyPem,
      cert: options.server.certPem,
      ca: options.clientCa,
      requestCert: true,
      rejectUnauthorized: options.rejectUnauthorized ?? true,
      minVersion: 'TLSv1.3',
      ...(options.crl ? { crl: options.crl } : {}),
    },
    (socket) => {
      result.authorized = socket.authorized;
      result.authorizationError = socket.authorizationError ? String(socket.authorizationError) : null;
      result.protocol = socket.getProtocol();
      socket.end(socket.authorized ? 'welcome' : '');
    },
  );
  server.on('tlsClientError', () => {
    result.refused = true;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => {
    const client = tls.connect({
      host: '127.0.0.1',
      port,
      ca: options.serverCa,
      minVersion: 'TLSv1.3',
      ...(options.servername ? { servername: options.servername } : {}),
      ...(options.client ? { cert: options.client.certPem, key: options.client.keyPem } : {}),
    });
    client.setEncoding('utf8');
    client.on('data', (chunk: string) => {
      result.received += chunk;
    });
    // In TLS 1.3 the client finishes its side before the server judges its certificate, so a refusal
    // arrives as an alert or a bare close after secureConnect; either way the assertions are server-side.
    client.on('error', () => {});
    client.on('close', () => resolve());
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return result;
}

describe('mutual TLS with these certificates', () => {
  const realNow = () => new Date();
  const ca = createCa({ commonName: 'TLS Root' });
  const issuer = createIssuer(ca);
  const broker = issuer.issue({
    commonName: 'broker',
    dns: ['localhost'],
    ips: ['127.0.0.1', '::1'],
    extendedKeyUsage: ['serverAuth'],
  });
  const car = issueVehicleIdentity(issuer, VIN, { now: realNow });
  const base = { server: broker, clientCa: ca.certPem, serverCa: ca.certPem };

  it('completes a TLS 1.3 handshake with a vehicle certificate, checking the broker by IP SAN', async () => {
    const result = await handshake({ ...base, client: car });
    expect(result).toMatchObject({
      authorized: true,
      protocol: 'TLSv1.3',
      refused: false,
      received: 'welcome',
    });
  });

  it('checks the broker by DNS SAN too', async () => {
    const result = await handshake({ ...base, client: car, servername: 'localhost' });
    expect(result.received).toBe('welcome');
  });

  it('refuses a client without a certificate', async () => {
    const result = await handshake({ ...base });
    expect(result).toMatchObject({ authorized: false, refused: true, received: '' });
  });

  const refusals: Array<[string, () => IssuedCertificate, string]> = [
    [
      'a certificate from another CA',
      () => issueVehicleIdentity(createIssuer(createCa({ commonName: 'TLS Root' })), VIN),
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    ],
    [
      'an expired certificate',
      () =>
        issueVehicleIdentity(issuer, VIN, {
          notBefore: new Date(Date.now() - 2 * DAY),
          notAfter: new Date(Date.now() - DAY),
        }),
      'CERT_HAS_EXPIRED',
    ],
    [
      'a not-yet-valid certificate',
      () =>
        issueVehicleIdentity(issuer, VIN, {
          notBefore: new Date(Date.now() + DAY),
          notAfter: new Date(Date.now() + 2 * DAY),
        }),
      'CERT_NOT_YET_VALID',
    ],
    [
      'a certificate whose EKU is serverAuth only',
      () => issueVehicleIdentity(issuer, VIN, { extendedKeyUsage: ['serverAuth'] }),
      'INVALID_PURPOSE',
    ],
  ];
  it.each(refusals)('refuses %s', async (_why, make, reason) => {
    const client = make();
    const refused = await handshake({ ...base, client });
    expect(refused).toMatchObject({ authorized: false, refused: true, received: '' });
    // The same handshake, allowed to finish, says why.
    const diagnosed = await handshake({ ...base, client, rejectUnauthorized: false });
    expect(diagnosed).toMatchObject({ authorized: false, authorizationError: reason });
  });

  it('refuses a revoked certificate and accepts an unrevoked one under the same CRL', async () => {
    const revoked = issueVehicleIdentity(issuer, OTHER_VIN);
    const crl = createCrl({
      ca,
      revoked: [{ serial: revoked.serial, revokedAt: new Date(Date.now() - 60_000) }],
      thisUpdate: new Date(Date.now() - 60_000),
      nextUpdate: new Date(Date.now() + DAY),
      crlNumber: 1,
    });
    expect(await handshake({ ...base, client: revoked, crl })).toMatchObject({
      authorized: false,
      refused: true,
      received: '',
    });
    const diagnosed = await handshake({ ...base, client: revoked, crl, rejectUnauthorized: false });
    expect(diagnosed.authorizationError).toBe('CERT_REVOKED');
    expect(await handshake({ ...base, client: car, crl })).toMatchObject({
      authorized: true,
      received: 'welcome',
    });
  });

  it('refuses everyone once the CRL has expired (so the dev CRL must be kept fresh)', async () => {
    const crl = createCrl({
      ca,
      revoked: [],
      thisUpdate: new Date(Date.now() - 2 * DAY),
      nextUpdate: new Date(Date.now() - DAY),
      crlNumber: 1,
    });
    const diagnosed = await handshake({ ...base, client: car, crl, rejectUnauthorized: false });
    expect(diagnosed.authorizationError).toBe('CRL_HAS_EXPIRED');
  });
});

const mode = (path: string) => statSync(path).mode & 0o777;

describe('development PKI on disk', () => {
  it('creates everything once, then keeps it: same CA, keys 0600', async () => {
    const dir = join(tempDir(), 'pki');
    const first = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN], now: frozen });
    expect(first.created).toEqual([
      'ca',
      'broker',
      'gateway',
      `vehicles/${VIN}`,
      `vehicles/${OTHER_VIN}`,
      'token-signing.key',
      'trusted-keys.json',
      'audit-checkpoint.key',
      'audit-checkpoint.pub',
      'crl.pem',
    ]);
    expect(first.kept).toEqual([]);
    const caSerial = x509(readFileSync(first.caCert, 'utf8')).serialNumber;

    const second = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN], now: frozen });
    expect(second.created).toEqual([]);
    expect(second.kept).toEqual(first.created);
    expect(x509(readFileSync(second.caCert, 'utf8')).serialNumber).toBe(caSerial);

    for (const key of [
      first.caKey,
      first.brokerKey,
      first.gatewayKey,
      first.vehicleKey(VIN),
      first.vehicleKey(OTHER_VIN),
      first.tokenSigningKey,
      first.auditCheckpointKey,
    ]) {
      expect(mode(key), key).toBe(0o600);
      expect(readFileSync(key, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    }
    for (const file of [
      first.caCert,
      first.brokerCert,
      first.vehicleCert(VIN),
      first.crl,
      first.trustedKeys,
      first.auditCheckpointPub,
    ]) {
      expect(mode(file), file).toBe(0o644);
    }
    expect(mode(dir)).toBe(0o700);
  });

  it('writes the identities the broker, gateway and cars need', async () => {
    const dir = tempDir();
    const pki = await ensureDevPki({ dir, vins: [VIN], now: frozen });
    const ca = x509(readFileSync(pki.caCert, 'utf8'));
    const broker = x509(readFileSync(pki.brokerCert, 'utf8'));
    const gateway = x509(readFileSync(pki.gatewayCert, 'utf8'));
    const car = x509(readFileSync(pki.vehicleCert(VIN), 'utf8'));
    for (const cert of [broker, gateway, car]) expect(cert.verify(ca.publicKey)).toBe(true);
    expect(broker.subject).toBe('CN=broker');
    expect(broker.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(broker.keyUsage).toEqual([EXTENDED_KEY_USAGE_OIDS.serverAuth]);
    expect(gateway.subject).toBe('CN=gateway');
    expect(gateway.subjectAltName).toBe('URI:urn:gateway:gateway');
    expect(gateway.keyUsage).toEqual([EXTENDED_KEY_USAGE_OIDS.clientAuth]);
    expect(gatewayNameFromCertificate(gateway)).toBe('gateway');
    expect(vinFromCertificate(car)).toBe(VIN);

    const trusted = TrustedKeysFileSchema.parse(JSON.parse(readFileSync(pki.trustedKeys, 'utf8')));
    const tokenPublic = createPublicKey(readFileSync(pki.tokenSigningKey, 'utf8'));
    expect(tokenPublic.asymmetricKeyType).toBe('ed25519');
    expect(trusted.keys).toEqual([
      expect.objectContaining({
        kty: 'OKP',
        crv: 'Ed25519',
        kid: await kidFor(tokenPublic),
        use: 'sig',
        alg: 'EdDSA',
      }),
    ]);
    const state = RevocationStateSchema.parse(JSON.parse(readFileSync(pki.revoked, 'utf8')));
    expect(state).toEqual({ crlNumber: 1, nextUpdate: '2030-07-01T12:00:00.000Z', revoked: [] });
    expect(loadDevPki(dir).crl).toBe(pki.crl);
  });

  it('re-issues an identity whose certificate or key is missing, and tightens a loose key mode', async () => {
    const dir = tempDir();
    const first = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN, THIRD_VIN], now: frozen });
    const before = x509(readFileSync(first.vehicleCert(VIN), 'utf8')).serialNumber;
    rmSync(first.vehicleCert(VIN));
    rmSync(first.vehicleKey(OTHER_VIN));
    chmodSync(first.vehicleKey(VIN), 0o644);
    const second = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN, THIRD_VIN], now: frozen });
    expect(second.created).toEqual([`vehicles/${VIN}`, `vehicles/${OTHER_VIN}`]);
    expect(second.kept).toContain(`vehicles/${THIRD_VIN}`);
    expect(x509(readFileSync(first.vehicleCert(VIN), 'utf8')).serialNumber).not.toBe(before);
    expect(mode(first.vehicleKey(VIN))).toBe(0o600);
    expect(mode(first.vehicleKey(OTHER_VIN))).toBe(0o600);
    const cert = x509(readFileSync(first.vehicleCert(OTHER_VIN), 'utf8'));
    expect(cert.checkPrivateKey(createPrivateKey(readFileSync(first.vehicleKey(OTHER_VIN), 'utf8')))).toBe(
      true,
    );
  });

  it('re-issues a key pair that does not belong together, and expired leaves but not the CA', async () => {
    const dir = tempDir();
    const first = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN], now: frozen });
    writeFileSync(first.vehicleKey(VIN), readFileSync(first.vehicleKey(OTHER_VIN)));
    const second = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN], now: frozen });
    expect(second.created).toEqual([`vehicles/${VIN}`]);
    const later = new Date(NOW.getTime() + 400 * DAY);
    const third = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN], now: () => later });
    expect(third.created).toEqual([
      'broker',
      'gateway',
      `vehicles/${VIN}`,
      `vehicles/${OTHER_VIN}`,
      'crl.pem',
    ]);
    expect(third.kept).toEqual([
      'ca',
      'token-signing.key',
      'trusted-keys.json',
      'audit-checkpoint.key',
      'audit-checkpoint.pub',
    ]);
  });

  it('re-signs the CRL with the next number when it nears nextUpdate', async () => {
    const dir = tempDir();
    await ensureDevPki({ dir, vins: [], now: frozen });
    const soon = new Date(NOW.getTime() + 25 * DAY);
    const result = await ensureDevPki({ dir, vins: [], now: () => soon });
    expect(result.created).toEqual(['crl.pem']);
    expect(RevocationStateSchema.parse(JSON.parse(readFileSync(result.revoked, 'utf8'))).crlNumber).toBe(2);
  });

  it('refuses a half-present CA, a bad VIN and a token key that is not Ed25519', async () => {
    const dir = tempDir();
    const pki = await ensureDevPki({ dir, vins: [], now: frozen });
    rmSync(pki.caKey);
    expect(await asyncCodeOf(() => ensureDevPki({ dir, vins: [], now: frozen }))).toBe('PKI_INCOMPLETE');

    const fresh = join(tempDir(), 'fresh');
    expect(await asyncCodeOf(() => ensureDevPki({ dir: fresh, vins: ['1G1ZE5ST5KF100232'] }))).toBe(
      'VIN_INVALID',
    );
    expect(existsSync(fresh)).toBe(false);

    const other = tempDir();
    const paths = devPkiPaths(other);
    await ensureDevPki({ dir: other, vins: [], now: frozen });
    writeFileSync(paths.tokenSigningKey, readFileSync(paths.caKey));
    expect(await asyncCodeOf(() => ensureDevPki({ dir: other, vins: [], now: frozen }))).toBe(
      'PKI_STATE_INVALID',
    );
  });

  it('loadDevPki names what is missing instead of creating it', () => {
    const dir = tempDir();
    expect(codeOf(() => loadDevPki(dir))).toBe('PKI_INCOMPLETE');
    expect(readdirSync(dir)).toEqual([]);
    expect(codeOf(() => devPkiPaths(dir).vehicleCert('../ca'))).toBe('VIN_INVALID');
  });

  it('revokes a car: revoked.json grows, the CRL number rises, and TLS refuses only that car', async () => {
    const dir = tempDir();
    const pki = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN] });
    const serial = x509(readFileSync(pki.vehicleCert(VIN), 'utf8')).serialNumber;
    const revokedAt = new Date(Date.now() - 1000);
    const result = await revokeVehicle({ dir, vin: VIN, now: () => revokedAt });
    expect(result).toEqual({ vin: VIN, serial, crlNumber: 2, alreadyRevoked: false });
    const state = RevocationStateSchema.parse(JSON.parse(readFileSync(pki.revoked, 'utf8')));
    expect(state.revoked).toEqual([{ vin: VIN, serial, revokedAt: revokedAt.toISOString() }]);
    expect(await revokeVehicle({ dir, vin: VIN, now: () => revokedAt })).toMatchObject({
      crlNumber: 3,
      alreadyRevoked: true,
    });
    expect(await asyncCodeOf(() => revokeVehicle({ dir, vin: THIRD_VIN }))).toBe('VEHICLE_UNKNOWN');

    const read = (path: string) => readFileSync(path, 'utf8');
    const caPem = read(pki.caCert);
    const broker = { certPem: read(pki.brokerCert), keyPem: read(pki.brokerKey) };
    const base = { server: broker, clientCa: caPem, serverCa: caPem, crl: read(pki.crl) };
    const peer = (cert: string, key: string) => ({ certPem: read(cert), keyPem: read(key) });
    expect(
      await handshake({ ...base, client: peer(pki.vehicleCert(VIN), pki.vehicleKey(VIN)) }),
    ).toMatchObject({
      authorized: false,
      refused: true,
      received: '',
    });
    expect(
      await handshake({ ...base, client: peer(pki.vehicleCert(OTHER_VIN), pki.vehicleKey(OTHER_VIN)) }),
    ).toMatchObject({ authorized: true, received: 'welcome' });
    expect(await handshake({ ...base, client: peer(pki.gatewayCert, pki.gatewayKey) })).toMatchObject({
      authorized: true,
      received: 'welcome',
    });
  });
});

describe('rotation', () => {
  it('re-issues a car: new key and serial on disk, the old serial revocable by --serial afterwards', async () => {
    const dir = tempDir();
    const pki = await ensureDevPki({ dir, vins: [VIN, OTHER_VIN] });
    const old = x509(readFileSync(pki.vehicleCert(VIN), 'utf8'));
    const oldKey = readFileSync(pki.vehicleKey(VIN), 'utf8');
    const rotated = await reissueVehicle({ dir, vin: VIN });
    expect(rotated).toEqual({ vin: VIN, previousSerial: old.serialNumber, serial: expect.any(String) });
    const fresh = x509(readFileSync(pki.vehicleCert(VIN), 'utf8'));
    expect(fresh.serialNumber).toBe(rotated.serial);
    expect(fresh.serialNumber).not.toBe(old.serialNumber);
    expect(readFileSync(pki.vehicleKey(VIN), 'utf8')).not.toBe(oldKey);
    expect(mode(pki.vehicleKey(VIN))).toBe(0o600);
    expect(vinFromCertificate(fresh)).toBe(VIN);
    expect(fresh.checkPrivateKey(createPrivateKey(readFileSync(pki.vehicleKey(VIN), 'utf8')))).toBe(true);

    const revoked = await revokeVehicle({ dir, vin: VIN, serial: old.serialNumber.toLowerCase() });
    expect(revoked).toMatchObject({ serial: old.serialNumber, alreadyRevoked: false, crlNumber: 2 });
    const crl = readCrl(readFileSync(pki.crl, 'utf8'), readFileSync(pki.caCert, 'utf8'));
    expect([...crl.revoked]).toEqual([serialKey(old.serialNumber)]);
    expect(crl.revoked.has(serialKey(fresh.serialNumber))).toBe(false);
    expect(await revokeVehicle({ dir, vin: VIN, serial: `00${old.serialNumber}` })).toMatchObject({
      alreadyRevoked: true,
    });
  });

  it('refuses to rotate without a CA or for a malformed VIN', async () => {
    expect(await asyncCodeOf(() => reissueVehicle({ dir: tempDir(), vin: VIN }))).toBe('PKI_INCOMPLETE');
    expect(await asyncCodeOf(() => reissueVehicle({ dir: tempDir(), vin: '1G1ZE5ST5KF100232' }))).toBe(
      'VIN_INVALID',
    );
  });
});

describe('Mosquitto configuration', () => {
  const pki = devPkiPaths('/srv/pki');
  const files = mosquittoFiles({ pki, aclFile: '/srv/pki/mosquitto/acl', host: '127.0.0.1', port: 18883 });
  const lines = (text: string) => text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));

  it('writes one TLS 1.3 listener with client certificates, the CRL and no anonymous access', () => {
    expect(lines(files.conf)).toEqual([
      'per_listener_settings false',
      'allow_anonymous false',
      'acl_file /srv/pki/mosquitto/acl',
      'retain_available false',
      `max_packet_size ${MAX_PACKET_BYTES}`,
      'sys_interval 0',
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      'connection_messages true',
      'listener 18883 127.0.0.1',
      'protocol mqtt',
      'tls_version tlsv1.3',
      'cafile /srv/pki/ca.crt',
      'certfile /srv/pki/broker.crt',
      'keyfile /srv/pki/broker.key',
      'crlfile /srv/pki/crl.pem',
      'require_certificate true',
      'use_identity_as_username true',
      'use_username_as_clientid true',
    ]);
    expect(files.conf.match(/^listener /gm)).toHaveLength(1);
  });

  it('grants cars their own topics by pattern and the gateway the rest, nothing else', () => {
    expect(lines(files.acl)).toEqual([
      'pattern read vehicles/%u/commands',
      'pattern write vehicles/%u/acks',
      'pattern write vehicles/%u/state',
      'user gateway',
      'topic write vehicles/+/commands',
      'topic write vehicles/_probe/acks',
      'topic write vehicles/_probe/state',
      'topic read vehicles/+/acks',
      'topic read vehicles/+/state',
    ]);
    expect(lines(mosquittoAcl(['gw_2']))).toContain('user gw_2');
  });

  it('names the run-as user only when asked, and refuses values that would break the file', () => {
    const asRoot = mosquittoFiles({ pki, aclFile: '/a', host: '::1', port: 1, user: 'root' });
    expect(lines(asRoot.conf)).toContain('user root');
    expect(lines(files.conf).some((line) => line.startsWith('user '))).toBe(false);
    const bad = [
      { aclFile: '/a b' },
      { host: '127.0.0.1\nallow_anonymous true' },
      { port: 0 },
      { port: 65_536 },
      { user: 'x y' },
    ];
    for (const over of bad) {
      expect(codeOf(() => mosquittoFiles({ pki, aclFile: '/a', host: 'h', port: 1, ...over }))).toBe(
        'CERT_OPTIONS_INVALID',
      );
    }
  });
});

describe('fleet issuance', () => {
  it('issues 200 identities that all verify against the CA', async () => {
    const dir = tempDir();
    const progress: number[] = [];
    const report = await issueFleet({ dir, count: 200, onProgress: (done) => progress.push(done) });
    expect(report.count).toBe(200);
    expect(report.perSecond).toBeGreaterThan(0);
    expect(progress).toHaveLength(200);
    expect(progress.at(-1)).toBe(200);
    const paths = devPkiPaths(dir);
    const ca = x509(readFileSync(paths.caCert, 'utf8'));
    const files = readdirSync(paths.vehiclesDir);
    expect(files).toHaveLength(400);
    const vins = files.filter((f) => f.endsWith('.crt')).map((f) => f.slice(0, -4));
    expect(new Set(vins).size).toBe(200);
    for (const vin of vins) {
      expect(vinProblem(vin)).toBeNull();
      const cert = x509(readFileSync(paths.vehicleCert(vin), 'utf8'));
      expect(cert.checkIssued(ca)).toBe(true);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(vinFromCertificate(cert)).toBe(vin);
      expect(mode(paths.vehicleKey(vin))).toBe(0o600);
    }
  });

  it('re-uses the CA already in the directory', async () => {
    const dir = tempDir();
    await issueFleet({ dir, count: 1 });
    const caPem = readFileSync(devPkiPaths(dir).caCert, 'utf8');
    await issueFleet({ dir, count: 2 });
    expect(readFileSync(devPkiPaths(dir).caCert, 'utf8')).toBe(caPem);
  });

  it('issues the VINs a vinOf option names', async () => {
    const dir = tempDir();
    const vins = ['1G1ZE5ST5KF100231', '1GNSKBKC3FR200114'];
    const report = await issueFleet({ dir, count: 2, vinOf: (i) => vins[i] as string });
    expect([report.firstVin, report.lastVin]).toEqual(vins);
    for (const vin of vins) {
      expect(vinFromCertificate(x509(readFileSync(devPkiPaths(dir).vehicleCert(vin), 'utf8')))).toBe(vin);
    }
  });

  it('composes distinct valid synthetic VINs across plants', async () => {
    const sample = [0, 1, 999_999, 1_000_000, 22_999_999].map(syntheticVin);
    for (const vin of sample) expect(vinProblem(vin)).toBeNull();
    expect(new Set(sample).size).toBe(sample.length);
    expect(codeOf(() => syntheticVin(23_000_000))).toBe('CERT_OPTIONS_INVALID');
    expect(await asyncCodeOf(() => issueFleet({ dir: tempDir(), count: 0 }))).toBe('CERT_OPTIONS_INVALID');
  });
});

describe('certs command line', () => {
  function io(overrides: Partial<CliIo> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const value: CliIo = {
      stdout: (text) => out.push(text),
      stderr: (text) => err.push(text),
      stderrIsTty: false,
      now: () => new Date(),
      clock: () => performance.now(),
      seededVins: () => [VIN, OTHER_VIN],
      makeTempDir: () => tempDir(),
      ...overrides,
    };
    return { io: value, out: () => out.join(''), err: () => err.join('') };
  }

  it.each([
    [['bogus']],
    [['fleet']],
    [['fleet', '--count', '0']],
    [['fleet', '--count', '12x']],
    [['fleet', '--count', '5', '--bogus']],
    [['revoke']],
    [['revoke', '1G1ZE5ST5KF100232']],
    [['revoke', VIN, OTHER_VIN]],
    [['dev', 'extra']],
    [['--dir']],
    [['revoke', VIN, '--serial', 'xyz']],
    [['rotate']],
    [['rotate', 'nope']],
    [['mosquitto', '--port', '0']],
    [['mosquitto', '--port', '8883x']],
    [['mosquitto', 'extra']],
    [['replica']],
    [['replica', 'r 2']],
    [['replica', '../r2']],
    [['replica', 'r1', 'r2']],
    [['nats', '--nodes', '0']],
    [['nats', '--nodes', '10']],
    [['nats', '--port', '0']],
    [['nats', '--port', '65500']],
    [['nats', 'extra']],
  ])('exits 2 with one line for %j', async (argv) => {
    const run = io();
    expect(await runCli(argv, run.io)).toBe(EXIT_USAGE);
    expect(run.err()).toMatch(/^certs: [^\n]+\n$/);
    expect(run.out()).toBe('');
  });

  it.each([
    [['--help']],
    [['dev', '--help']],
    [['revoke', '-h']],
    [['fleet', '--help']],
    [['rotate', '--help']],
    [['mosquitto', '--help']],
    [['replica', '--help']],
    [['nats', '--help']],
  ])('prints help for %j', async (argv) => {
    const run = io();
    expect(await runCli(argv, run.io)).toBe(EXIT_OK);
    expect(run.out()).toMatch(/^Usage: npm run certs --/);
  });

  it('dev creates then keeps, revoke revokes, and no private key is ever printed', async () => {
    const dir = tempDir();
    const first = io();
    expect(await runCli(['--dir', dir], first.io)).toBe(EXIT_OK);
    expect(first.out()).toContain(`created  vehicles/${VIN}`);
    const second = io();
    expect(await runCli(['dev', '--dir', dir], second.io)).toBe(EXIT_OK);
    expect(second.out()).toContain(': 0 created, 10 kept');
    const revoke = io();
    expect(await runCli(['revoke', VIN, '--dir', dir], revoke.io)).toBe(EXIT_OK);
    expect(revoke.out()).toContain('CRL number 2');
    const unknown = io();
    expect(await runCli(['revoke', THIRD_VIN, '--dir', dir], unknown.io)).toBe(EXIT_FAILURE);
    for (const run of [first, second, revoke, unknown])
      expect(run.out() + run.err()).not.toContain('PRIVATE KEY');
  });

  it('rotate prints the revoke command for the old serial; revoke --serial runs it', async () => {
    const dir = tempDir();
    expect(await runCli(['dev', '--dir', dir], io().io)).toBe(EXIT_OK);
    const old = x509(readFileSync(devPkiPaths(dir).vehicleCert(VIN), 'utf8')).serialNumber;
    const rotate = io();
    expect(await runCli(['rotate', VIN, '--dir', dir], rotate.io)).toBe(EXIT_OK);
    expect(rotate.out()).toContain(`npm run certs -- revoke ${VIN} --serial ${old} --dir ${dir}`);
    const revoke = io();
    expect(await runCli(['revoke', VIN, '--serial', old, '--dir', dir], revoke.io)).toBe(EXIT_OK);
    expect(revoke.out()).toContain(`${VIN} revoked (serial ${old})`);
    expect(rotate.out() + revoke.out()).not.toContain('PRIVATE KEY');
  });

  it('replica issues a gateway replica its own identity (key 0600), kept on a second run, and listed in the ACL', async () => {
    const dir = tempDir();
    expect(await runCli(['dev', '--dir', dir], io().io)).toBe(EXIT_OK);
    const first = io();
    expect(await runCli(['replica', 'r2', '--dir', dir], first.io)).toBe(EXIT_OK);
    expect(first.out()).toContain('gateway-r2: issued');
    const again = io();
    expect(await runCli(['replica', 'r2', '--dir', dir], again.io)).toBe(EXIT_OK);
    expect(again.out()).toContain('gateway-r2: kept');
    const cert = readFileSync(join(dir, 'gateways', 'gateway-r2.crt'), 'utf8');
    expect(gatewayNameFromCertificate(x509(cert))).toBe('gateway-r2');
    expect(statSync(join(dir, 'gateways', 'gateway-r2.key')).mode & 0o777).toBe(0o600);
    expect(first.out() + again.out()).not.toContain('PRIVATE KEY');
    expect(await runCli(['mosquitto', '--dir', dir], io().io)).toBe(EXIT_OK);
    const acl = readFileSync(join(dir, 'mosquitto', 'acl'), 'utf8').split('\n');
    expect(acl).toContain('user gateway');
    expect(acl).toContain('user gateway-r2');
  });

  it('mosquitto writes the two files beside the PKI, or refuses when there is no PKI', async () => {
    const dir = tempDir();
    const missing = io();
    expect(await runCli(['mosquitto', '--dir', dir], missing.io)).toBe(EXIT_FAILURE);
    expect(missing.err()).toContain('npm run certs -- dev');
    expect(await runCli(['dev', '--dir', dir], io().io)).toBe(EXIT_OK);
    const run = io();
    expect(await runCli(['mosquitto', '--dir', dir, '--port', '18883', '--user', 'nobody'], run.io)).toBe(
      EXIT_OK,
    );
    const conf = readFileSync(join(dir, 'mosquitto', 'mosquitto.conf'), 'utf8');
    expect(conf).toContain(`crlfile ${join(dir, 'crl.pem')}`);
    expect(conf).toContain('listener 18883 127.0.0.1');
    expect(conf).toContain('user nobody');
    expect(readFileSync(join(dir, 'mosquitto', 'acl'), 'utf8')).toContain(
      'pattern read vehicles/%u/commands',
    );
    expect(run.out()).toContain('MQTT_URL=mqtts://127.0.0.1:18883 npm start');
    const defaults = io();
    expect(await runCli(['mosquitto', '--dir', dir, '--out', join(dir, 'm2')], defaults.io)).toBe(EXIT_OK);
    expect(readFileSync(join(dir, 'm2', 'mosquitto.conf'), 'utf8')).toContain(
      `listener ${DEFAULT_MOSQUITTO_PORT} 127.0.0.1`,
    );
  });

  it('fleet prints a progress bar on stderr and the rate on stdout', async () => {
    const dir = tempDir();
    const run = io();
    expect(await runCli(['fleet', '--count', '20', '--out', dir], run.io)).toBe(EXIT_OK);
    expect(run.out()).toMatch(/^\d+ identities\/s$/m);
    expect(run.err()).toContain(progressBar(20, 20));
    expect(readdirSync(join(dir, 'vehicles'))).toHaveLength(40);
  });

  it('draws a fixed-width bar', () => {
    expect(progressBar(0, 4, 8)).toBe('[........] 0/4   0%');
    expect(progressBar(2, 4, 8)).toBe('[####....] 2/4  50%');
    expect(progressBar(4, 4, 8)).toBe('[########] 4/4 100%');
  });
});

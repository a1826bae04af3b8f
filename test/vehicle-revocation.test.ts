// The gateway's own revocation check (gateway/vehicles/revocation.ts): which certificate of a VIN it asks about, and
// which CRLs it takes, with certificates and CRLs made by the project's PKI.
import { describe, expect, it } from 'vitest';
import {
  createCa,
  createCrl,
  createIssuer,
  type IssuedCertificate,
  issueVehicleIdentity,
} from '../certs/index.ts';
import { createVehicleRevocation } from '../gateway/vehicles/revocation.ts';

const VIN = '1G1ZE5ST5KF100231';
const OTHER_VIN = '1GNSKBKC3FR200114';
const DAY = 86_400_000;
const NOW = Date.now();

const ca = createCa({ commonName: 'Curbside Key Test CA' });
const issuer = createIssuer(ca);
const crl = (crlNumber: number, revoked: IssuedCertificate[] = [], signer = ca) =>
  createCrl({
    ca: signer,
    revoked: revoked.map((c) => ({ serial: c.serial, revokedAt: new Date(NOW - 1_000) })),
    thisUpdate: new Date(NOW - 1_000),
    nextUpdate: new Date(NOW + DAY),
    crlNumber,
  });

/** A revocation check over files held in maps: issued certificates (the PKI folder) and pinned ones (the store). */
function setup(initial: string) {
  const issued = new Map<string, string>();
  const pinned = new Map<string, string>();
  const reads: string[] = [];
  const revocation = createVehicleRevocation({
    caPem: ca.certPem,
    crl: initial,
    issuedCertificate: (vin) => {
      reads.push(vin);
      return issued.get(vin) ?? null;
    },
    pinnedCertificate: async (vin) => pinned.get(vin) ?? null,
  });
  return { revocation, issued, pinned, reads };
}

describe("the gateway's revocation check", () => {
  it('with nothing revoked, answers without reading any certificate', async () => {
    const { revocation, issued, reads } = setup(crl(1));
    issued.set(VIN, issueVehicleIdentity(issuer, VIN).certPem);
    expect(await revocation.isRevoked(VIN)).toBe(false);
    expect(reads).toEqual([]);
  });

  it("asks about the VIN's issued certificate: revoked, or served again after a rotation", async () => {
    const first = issueVehicleIdentity(issuer, VIN);
    const other = issueVehicleIdentity(issuer, OTHER_VIN);
    const { revocation, issued } = setup(crl(1));
    issued.set(VIN, first.certPem);
    issued.set(OTHER_VIN, other.certPem);
    expect(await revocation.isRevoked(VIN)).toBe(false);

    revocation.reloadCrl(crl(2, [first]));
    expect(await revocation.isRevoked(VIN)).toBe(true);
    expect(await revocation.isRevoked(OTHER_VIN)).toBe(false);

    // Rotation: a new certificate on file, the old serial stays on the CRL.
    const second = issueVehicleIdentity(issuer, VIN);
    issued.set(VIN, second.certPem);
    expect(await revocation.isRevoked(VIN)).toBe(false);
    // Known good once, but a CRL revoking it is not answered from memory.
    revocation.reloadCrl(crl(3, [first, second]));
    expect(await revocation.isRevoked(VIN)).toBe(true);
  });

  it('falls back to the pinned certificate for a VIN with none on file', async () => {
    const pinnedCert = issueVehicleIdentity(issuer, VIN);
    const { revocation, pinned } = setup(crl(1, [pinnedCert]));
    expect(await revocation.isRevoked(VIN)).toBe(false); // nothing on file at all
    pinned.set(VIN, pinnedCert.certPem);
    expect(await revocation.isRevoked(VIN)).toBe(true);
  });

  it('refuses a CRL that does not verify or is older, and keeps the one in use', async () => {
    const revoked = issueVehicleIdentity(issuer, VIN);
    const { revocation, issued } = setup(crl(5, [revoked]));
    issued.set(VIN, revoked.certPem);
    const codeOf = (pem: string): string => {
      try {
        revocation.reloadCrl(pem);
        return 'applied';
      } catch (err) {
        return (err as { code: string }).code;
      }
    };
    expect(codeOf('not a CRL')).toBe('CRL_INVALID');
    expect(codeOf(crl(9, [], createCa({ commonName: 'Curbside Key Test CA' })))).toBe('CRL_INVALID');
    expect(codeOf(crl(4))).toBe('CRL_STALE');
    expect(await revocation.isRevoked(VIN)).toBe(true);
    expect(codeOf(crl(5, [revoked]))).toBe('applied');
  });

  it('does not start on a CRL it cannot verify', () => {
    expect(() => setup('garbage')).toThrow(expect.objectContaining({ code: 'CRL_INVALID' }));
  });
});

// Owns turning a car's ack into evidence: bound to the command it answers, signed by the car's pinned certificate.
import { createHash, X509Certificate } from 'node:crypto';
import { type Ack, type AckSignatureCode, canonicalAck, verifyAckSignature } from '../../protocols/index.ts';
import type { VehicleAckRecord } from '../store/commands.ts';
import type { Db } from '../store/db.ts';
import { findVehicleCertificate, repinVehicleCertificate } from '../store/vehicles.ts';
import { validAt } from './certificates.ts';

/** Pinned certificates change only at link or rotation: parse each PEM once (it was 7 % of a busy gateway). */
const PARSED_LIMIT = 10_000;
const parsed = new Map<string, X509Certificate>();
function parseCertificate(pem: string): X509Certificate {
  let cert = parsed.get(pem);
  if (!cert) {
    cert = new X509Certificate(pem);
    if (parsed.size >= PARSED_LIMIT) parsed.delete(parsed.keys().next().value as string);
    parsed.set(pem, cert);
  }
  return cert;
}

export type AckRefusal =
  | 'ACK_BINDING_MISMATCH'
  | 'ACK_NO_CERTIFICATE'
  | 'ACK_CERTIFICATE_EXPIRED'
  | AckSignatureCode;

/** What the gateway sent, which the ack must name exactly. */
export interface ExpectedAck {
  vin: string;
  commandId: string;
  action: string;
  /** Absent for commands outside a delivery (key announcements). */
  deliveryId?: string;
}

export type AckCheck = { ok: true; evidence: VehicleAckRecord } | { ok: false; code: AckRefusal };

/**
 * Accepts an ack only when it names the command it answers (so an old ack re-sent for a new command is refused)
 * and its signature verifies against the certificate pinned for that VIN (so no other key, not even another car's,
 * can speak for it). Binding first: it is cheap and names the more useful refusal.
 */
export async function checkSignedAck(
  db: Db,
  expected: ExpectedAck,
  ack: Ack,
  receivedAt: number,
  /**
   * The certificate the CA issues the VIN now (PEM, already checked against the CA, VIN and validity), or null.
   * A car whose certificate was rotated (npm run certs -- rotate) signs with its new key; its ack is accepted only
   * if that current certificate verifies it, and the new certificate is pinned from then on.
   */
  current?: (vin: string, at: number) => string | null,
  /** The pinned certificate as the caller read it with the vehicle; read here when undefined. */
  pinned?: string | null,
): Promise<AckCheck> {
  if (
    ack.vin !== expected.vin ||
    ack.commandId !== expected.commandId ||
    ack.action !== expected.action ||
    ack.deliveryId !== expected.deliveryId
  ) {
    return { ok: false, code: 'ACK_BINDING_MISMATCH' };
  }
  const pem = pinned === undefined ? await findVehicleCertificate(db, expected.vin) : pinned;
  if (pem === null) return { ok: false, code: 'ACK_NO_CERTIFICATE' };
  let certificate = parseCertificate(pem);
  let signature = validAt(certificate, receivedAt)
    ? verifyAckSignature(ack, certificate.publicKey)
    : ({ ok: false, code: 'ACK_CERTIFICATE_EXPIRED' } as const);
  if (!signature.ok) {
    const rotated = current?.(expected.vin, receivedAt) ?? null;
    if (rotated === null || rotated === pem) return { ok: false, code: signature.code };
    const next = parseCertificate(rotated);
    const again = verifyAckSignature(ack, next.publicKey);
    if (!again.ok) return { ok: false, code: signature.code };
    await repinVehicleCertificate(db, expected.vin, rotated);
    certificate = next;
    signature = again;
  }
  return {
    ok: true,
    evidence: {
      commandId: ack.commandId,
      vin: ack.vin,
      deliveryId: ack.deliveryId ?? null,
      action: ack.action,
      outcome: ack.outcome,
      reason: ack.reason ?? null,
      locked: ack.locked,
      carAt: ack.at,
      payload: canonicalAck(ack),
      sig: ack.sig,
      certSha256: createHash('sha256').update(certificate.raw).digest('hex'),
      receivedAt,
    },
  };
}

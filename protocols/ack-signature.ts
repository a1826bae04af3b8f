// Owns the car's signature on its acks: ES256 with its VIN certificate's key, detached over the canonical ack (TOKEN.md §9).
import { type KeyObject, sign, verify } from 'node:crypto';
import { canonicalJson } from './canonical-json.ts';
import type { Ack, UnsignedAck } from './messages.ts';
import { parseStrictJson } from './strict-json.ts';

export const ACK_SIG_ALG = 'ES256';
export const ACK_SIG_TYP = 'vehicle-ack+jws';
/** The one protected header a car writes; the gateway accepts no other. */
const ACK_HEADER = Buffer.from(JSON.stringify({ alg: ACK_SIG_ALG, typ: ACK_SIG_TYP })).toString('base64url');
const P256_SIGNATURE_BYTES = 64;
const DETACHED = /^([A-Za-z0-9_-]+)\.\.([A-Za-z0-9_-]+)$/;

export type AckSignatureCode = 'ACK_SIGNATURE_MALFORMED' | 'ACK_SIGNATURE_INVALID';
export type AckSignatureCheck = { ok: true } | { ok: false; code: AckSignatureCode };

/** The bytes an ack's signature covers: RFC 8785 canonical JSON of the ack without `sig`. */
export function canonicalAck(ack: UnsignedAck | Ack): string {
  const { sig: _sig, ...unsigned } = ack as Ack;
  return canonicalJson(unsigned);
}

const signingInput = (header: string, ack: UnsignedAck | Ack): Buffer =>
  Buffer.from(`${header}.${Buffer.from(canonicalAck(ack)).toString('base64url')}`);

/** Signs an ack with the car's P-256 key: `sig` is a compact JWS with a detached payload (RFC 7515 App. F). */
export function signAck(ack: UnsignedAck, privateKey: KeyObject): Ack {
  // ieee-p1363 is the JWS form of an ECDSA signature: r || s, 32 bytes each (RFC 7518 §3.4).
  const signature = sign('sha256', signingInput(ACK_HEADER, ack), {
    key: privateKey,
    dsaEncoding: 'ieee-p1363',
  });
  return { ...ack, sig: `${ACK_HEADER}..${signature.toString('base64url')}` };
}

const canonicalSegment = (segment: string): Buffer | null => {
  const bytes = Buffer.from(segment, 'base64url');
  return bytes.toString('base64url') === segment ? bytes : null;
};

/** Checks an ack's signature against the public key of the certificate the gateway pinned for its VIN. */
export function verifyAckSignature(ack: Ack, publicKey: KeyObject): AckSignatureCheck {
  const parts = DETACHED.exec(ack.sig);
  const header = parts ? canonicalSegment(parts[1] as string) : null;
  const signature = parts ? canonicalSegment(parts[2] as string) : null;
  if (!parts || !header || !signature) return { ok: false, code: 'ACK_SIGNATURE_MALFORMED' };
  let parsed: unknown;
  try {
    parsed = parseStrictJson(header.toString('utf8'), 1);
  } catch {
    return { ok: false, code: 'ACK_SIGNATURE_MALFORMED' };
  }
  const h = parsed as Record<string, unknown> | null;
  if (
    typeof h !== 'object' ||
    h === null ||
    Object.keys(h).length !== 2 ||
    h.alg !== ACK_SIG_ALG ||
    h.typ !== ACK_SIG_TYP
  ) {
    return { ok: false, code: 'ACK_SIGNATURE_MALFORMED' };
  }
  if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    return { ok: false, code: 'ACK_SIGNATURE_INVALID' };
  }
  if (signature.length !== P256_SIGNATURE_BYTES) return { ok: false, code: 'ACK_SIGNATURE_INVALID' };
  const valid = verify(
    'sha256',
    signingInput(parts[1] as string, ack),
    { key: publicKey, dsaEncoding: 'ieee-p1363' },
    signature,
  );
  return valid ? { ok: true } : { ok: false, code: 'ACK_SIGNATURE_INVALID' };
}

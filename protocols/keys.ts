// Owns the trust-anchor file a car pins at enrollment: the gateway's Ed25519 public keys as a JWKS, by kid.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import { z } from 'zod';
import { type KeyRing, KID_PATTERN, type TrustedKey } from './jws.ts';

export const TrustedJwkSchema = z.strictObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  kid: z.string().regex(KID_PATTERN),
  use: z.literal('sig').optional(),
  alg: z.literal('EdDSA').optional(),
  /** ISO time after which the car refuses tokens under this key. */
  retiredAt: z.iso.datetime().optional(),
});
export type TrustedJwk = z.infer<typeof TrustedJwkSchema>;

export const TrustedKeysFileSchema = z.strictObject({ keys: z.array(TrustedJwkSchema).min(1).max(16) });
export type TrustedKeysFile = z.infer<typeof TrustedKeysFileSchema>;

/** RFC 7638 thumbprint of an Ed25519 public key, used as its kid. */
export async function kidFor(publicKey: KeyObject): Promise<string> {
  const jwk = publicKey.export({ format: 'jwk' });
  return calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x as string }, 'sha256');
}

/** The kid a trusted JWK must carry: the RFC 7638 thumbprint of its public members. */
export const kidForJwk = (jwk: Pick<TrustedJwk, 'kty' | 'crv' | 'x'>): Promise<string> =>
  calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, 'sha256');

export async function trustedJwkFor(publicKey: KeyObject): Promise<TrustedJwk> {
  const jwk = publicKey.export({ format: 'jwk' });
  return {
    kty: 'OKP',
    crv: 'Ed25519',
    x: jwk.x as string,
    kid: await kidFor(publicKey),
    use: 'sig',
    alg: 'EdDSA',
  };
}

/** Builds the car's key ring from a parsed trust-anchor file. */
export function keyRingFrom(file: TrustedKeysFile): KeyRing {
  const ring = new Map<string, TrustedKey>();
  for (const jwk of file.keys) {
    const publicKey = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: 'jwk' });
    const entry: TrustedKey = { kid: jwk.kid, publicKey };
    if (jwk.retiredAt) entry.retiredAt = Date.parse(jwk.retiredAt);
    ring.set(jwk.kid, entry);
  }
  return ring;
}

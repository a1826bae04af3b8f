// Owns the kit's gateway signing role: the Ed25519 key the endpoint trusts, and the throwaway keys it announces.
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { kidFor, type TrustedJwk, trustedJwkFor } from '../keys.ts';

/** One Ed25519 key as the kit uses it: the private half signs, the JWK is what an announcement carries. */
export interface KitKey {
  key: KeyObject;
  kid: string;
  /** The public key as a trusted JWK, without retiredAt. */
  jwk: TrustedJwk;
}

/** The kit's signing key: the one the endpoint must trust (its trusted-keys.json, TOKEN.md §2). */
export async function kitKey(privateKey: KeyObject): Promise<KitKey> {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new TypeError('the kit signs with an Ed25519 private key (TOKEN.md §3)');
  }
  const publicKey = createPublicKey(privateKey);
  return { key: privateKey, kid: await kidFor(publicKey), jwk: await trustedJwkFor(publicKey) };
}

/** A fresh key nobody trusts yet: announced to the endpoint, or used to sign what it must refuse. */
export const throwawayKey = (): Promise<KitKey> => kitKey(generateKeyPairSync('ed25519').privateKey);

/** The JWK with a retirement instant, ISO 8601 (TOKEN.md §2). */
export const retiring = (jwk: TrustedJwk, atMs: number): TrustedJwk => ({
  ...jwk,
  retiredAt: new Date(atMs).toISOString(),
});

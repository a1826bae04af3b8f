// Owns the gateway's token-signing keys: a ring of Ed25519 keys with one active kid (TOKEN.md §8.3).
import { createPublicKey, type KeyObject } from 'node:crypto';
import { kidFor, type TrustedJwk, trustedJwkFor } from '../../protocols/index.ts';
import { KeyRingError } from '../errors.ts';

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
}

export interface SigningKeyRing {
  /** The key every new token and announcement is signed with. */
  active(): SigningKey;
  /** Adds a key without activating it: cars must trust it first. Adding a key twice is a no-op. */
  add(privateKey: KeyObject): Promise<SigningKey>;
  /** Makes a key of the ring the active one. */
  activate(kid: string): void;
  /** Drops a key that is not active, once cars have retired it. */
  remove(kid: string): void;
  kids(): string[];
  /**
   * The ring as the JWKS a key announcement carries: every key, with `retiredAt` (ms) for those being retired.
   */
  jwks(retire?: Readonly<Record<string, number>>): Promise<TrustedJwk[]>;
}

async function signingKey(privateKey: KeyObject): Promise<SigningKey> {
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new KeyRingError('SIGNING_KEY_NOT_ED25519', 'token-signing keys are Ed25519');
  }
  return { kid: await kidFor(createPublicKey(privateKey)), privateKey };
}

/** A ring of the given keys; the first is active. */
export async function createSigningKeyRing(first: KeyObject, ...more: KeyObject[]): Promise<SigningKeyRing> {
  const keys = new Map<string, SigningKey>();
  for (const key of [first, ...more]) {
    const k = await signingKey(key);
    keys.set(k.kid, k);
  }
  let activeKid = (await signingKey(first)).kid;
  const known = (kid: string): SigningKey => {
    const key = keys.get(kid);
    if (!key) throw new KeyRingError('SIGNING_KEY_UNKNOWN', `no key ${kid} in the ring`);
    return key;
  };
  return {
    active: () => known(activeKid),
    async add(privateKey) {
      const k = await signingKey(privateKey);
      if (!keys.has(k.kid)) keys.set(k.kid, k);
      return k;
    },
    activate(kid) {
      activeKid = known(kid).kid;
    },
    remove(kid) {
      known(kid);
      if (kid === activeKid) throw new KeyRingError('SIGNING_KEY_ACTIVE', 'the active key cannot be removed');
      keys.delete(kid);
    },
    kids: () => [...keys.keys()],
    async jwks(retire = {}) {
      return Promise.all(
        [...keys.values()].map(async (k) => {
          const jwk = await trustedJwkFor(createPublicKey(k.privateKey));
          const at = retire[k.kid];
          return at === undefined ? jwk : { ...jwk, retiredAt: new Date(at).toISOString() };
        }),
      );
    },
  };
}

// Owns forging hostile compact JWS: any header and payload text, non-canonical and malleated signatures.
// The published vectors and the conformance kit build their must-refuse tokens with it.
import { type KeyObject, sign } from 'node:crypto';

const b64 = (data: string | Buffer): string => Buffer.from(data).toString('base64url');
const text = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));

/** A compact JWS over exactly these header and payload texts (objects are JSON-encoded), signed with Ed25519. */
export function compactJws(header: unknown, payload: unknown, key: KeyObject): string {
  const input = `${b64(text(header))}.${b64(text(payload))}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

/** Adds the Ed25519 group order L to S (the second half of the signature): same point, non-canonical S. */
export function malleateSignature(signature: string): string {
  const sig = Buffer.from(signature, 'base64url');
  const L = (1n << 252n) + 27742317777372353535851937790883648493n;
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i] as number);
  s += L;
  for (let i = 32; i < 64; i++) {
    sig[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return sig.toString('base64url');
}

/** The same base64url bytes spelled differently: the last character's unused low bits set. */
export function nonCanonicalSegment(segment: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(segment.at(-1) as string);
  return `${segment.slice(0, -1)}${alphabet[last + 1]}`;
}

// Test harness: hand-made tokens, announcements and command payloads under the published test keys (protocols/vectors/).
import { createPrivateKey, type KeyObject, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  KEYS_TYP,
  kidForJwk,
  TOKEN_ISSUER,
  TOKEN_TYP,
  type TokenAction,
  type TrustedJwk,
  type TrustedKeysFile,
} from '../../protocols/index.ts';
import { TestKeysFileSchema, VECTOR_NOW, VECTOR_VIN } from '../../protocols/test-vectors.ts';

export const NOW = VECTOR_NOW;
export const NOW_S = NOW / 1000;
export const VIN = VECTOR_VIN;
export const OTHER_VIN = 'YV1A22MK3F1900345';

const testKeys = TestKeysFileSchema.parse(
  JSON.parse(
    readFileSync(join(import.meta.dirname, '..', '..', 'protocols', 'vectors', 'test-keys.json'), 'utf8'),
  ),
);
export type TestKeyName = keyof typeof testKeys.keys;

export const privateKey = (name: TestKeyName): KeyObject =>
  createPrivateKey({ key: testKeys.keys[name] as never, format: 'jwk' });

export async function publicJwk(name: TestKeyName, retiredAt?: number): Promise<TrustedJwk> {
  const { x } = testKeys.keys[name];
  const jwk: TrustedJwk = {
    kty: 'OKP',
    crv: 'Ed25519',
    x,
    kid: await kidForJwk({ kty: 'OKP', crv: 'Ed25519', x }),
  };
  return retiredAt === undefined ? jwk : { ...jwk, retiredAt: new Date(retiredAt).toISOString() };
}

export const kidOf = async (name: TestKeyName): Promise<string> => (await publicJwk(name)).kid;

/** The car trusts gateway-a only, as if just enrolled. */
export const enrolled = async (): Promise<TrustedKeysFile> => ({ keys: [await publicJwk('gateway-a')] });

const b64 = (text: string): string => Buffer.from(text).toString('base64url');
const asText = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));

/** A compact JWS over exactly these header and payload texts (objects are JSON-encoded), Ed25519-signed. */
export function jws(header: unknown, payload: unknown, key: KeyObject = privateKey('gateway-a')): string {
  const input = `${b64(asText(header))}.${b64(asText(payload))}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

let serial = 0;
export const nextId = (prefix: string): string => `${prefix}_${++serial}`;

export interface TokenSpec {
  key?: TestKeyName;
  kid?: string;
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  action?: TokenAction;
  commandId?: string;
  deliveryId?: string;
  /** Token time, ms: iat = nbf = this, exp 60 s later. */
  at?: number;
}

/** A token and the envelope that carries it; `envelope` overrides what the envelope says. */
export async function forgeCommand(
  spec: TokenSpec = {},
  envelope: Record<string, unknown> = {},
): Promise<{ raw: Buffer; token: string; commandId: string; deliveryId: string; jti: string }> {
  const key = spec.key ?? 'gateway-a';
  const commandId = spec.commandId ?? nextId('cmd');
  const deliveryId = spec.deliveryId ?? 'dlv_1';
  const jti = nextId('jti');
  const at = Math.floor((spec.at ?? NOW) / 1000);
  const token = jws(
    { alg: 'EdDSA', typ: TOKEN_TYP, kid: spec.kid ?? (await kidOf(key)), ...spec.header },
    {
      iss: TOKEN_ISSUER,
      aud: VIN,
      sub: deliveryId,
      act: spec.action ?? 'unlock',
      jti,
      cid: commandId,
      iat: at,
      nbf: at,
      exp: at + 60,
      ...spec.claims,
    },
    privateKey(key),
  );
  return {
    raw: wrap(token, { commandId, deliveryId, action: spec.action ?? 'unlock', ...envelope }),
    token,
    commandId,
    deliveryId,
    jti,
  };
}

export function wrap(token: string, envelope: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, type: 'command', ...envelope, token }));
}

/** A keys command carrying an announcement of `keys`, signed by `key` (default gateway-a). */
export async function forgeAnnouncement(
  keys: TrustedJwk[],
  seq: number,
  options: { key?: TestKeyName; kid?: string; at?: number } = {},
): Promise<{ raw: Buffer; announcement: string; commandId: string }> {
  const key = options.key ?? 'gateway-a';
  const announcement = jws(
    { alg: 'EdDSA', typ: KEYS_TYP, kid: options.kid ?? (await kidOf(key)) },
    { iss: TOKEN_ISSUER, seq, iat: Math.floor((options.at ?? NOW) / 1000), keys },
    privateKey(key),
  );
  const commandId = nextId('cmd');
  return {
    raw: Buffer.from(JSON.stringify({ v: 1, type: 'keys', commandId, announcement })),
    announcement,
    commandId,
  };
}

// Owns checkpoints: the C2SP tlog-checkpoint body inside a C2SP signed note, Ed25519 key ids and verifier keys.
import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { AuditError } from './errors.ts';
import { HASH_SIZE } from './merkle.ts';

/** A log's tree head: C2SP tlog-checkpoint's three mandatory lines. */
export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
}

/** The key a verifier trusts: a C2SP signed-note key name, its 4-byte key id and the Ed25519 public key. */
export interface NoteVerifierKey {
  name: string;
  id: Buffer;
  publicKey: KeyObject;
}

export interface NoteSigner {
  name: string;
  privateKey: KeyObject;
}

/** C2SP signed-note: key names are non-empty and hold no Unicode space and no '+'. */
const KEY_NAME = /^[^\p{White_Space}+]+$/u;
/** C2SP signed-note: signature type 0x01 is Ed25519. */
const ALG_ED25519 = 0x01;
const SIGNATURE_PREFIX = '\u2014 ';
const MAX_SIGNATURES = 100;
const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

const strictBase64 = (text: string): Buffer | null => {
  if (!B64.test(text) || text.length % 4 !== 0) return null;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : null;
};

export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') throw new AuditError('KEY_INVALID', 'checkpoint keys are Ed25519');
  return Buffer.from(pub.export({ format: 'jwk' }).x as string, 'base64url');
}

/** C2SP signed-note: key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]. */
export function noteKeyId(name: string, publicKey: KeyObject): Buffer {
  return createHash('sha256')
    .update(name, 'utf8')
    .update(Uint8Array.of(0x0a, ALG_ED25519))
    .update(rawPublicKey(publicKey))
    .digest()
    .subarray(0, 4);
}

/** The verifier key string `<name>+<hex key id>+<base64(0x01 || public key)>` (C2SP signed-note). */
export function formatVerifierKey(name: string, publicKey: KeyObject): string {
  if (!KEY_NAME.test(name)) throw new AuditError('KEY_INVALID', `key name ${JSON.stringify(name)}`);
  const material = Buffer.concat([Uint8Array.of(ALG_ED25519), rawPublicKey(publicKey)]);
  return `${name}+${noteKeyId(name, publicKey).toString('hex')}+${material.toString('base64')}`;
}

export function verifierKeyFor(name: string, publicKey: KeyObject): NoteVerifierKey {
  if (!KEY_NAME.test(name)) throw new AuditError('KEY_INVALID', `key name ${JSON.stringify(name)}`);
  const pub = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  return { name, id: noteKeyId(name, pub), publicKey: pub };
}

/** Parses a verifier key string; the id it states must be the one its name and key give. */
export function parseVerifierKey(text: string): NoteVerifierKey {
  const trimmed = text.trim();
  // The base64 may itself hold '+', so split on the first two only.
  const first = trimmed.indexOf('+');
  const second = trimmed.indexOf('+', first + 1);
  if (first <= 0 || second < 0) throw new AuditError('KEY_INVALID', 'not <name>+<key id>+<key>');
  const name = trimmed.slice(0, first);
  const hexId = trimmed.slice(first + 1, second);
  const material = strictBase64(trimmed.slice(second + 1));
  if (!KEY_NAME.test(name) || !/^[0-9a-f]{8}$/.test(hexId) || !material) {
    throw new AuditError('KEY_INVALID', 'not <name>+<8 hex digits>+<base64>');
  }
  if (material.length !== 33 || material[0] !== ALG_ED25519) {
    throw new AuditError('KEY_INVALID', 'not an Ed25519 verifier key (type 0x01, 32 bytes)');
  }
  const publicKey = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: material.subarray(1).toString('base64url') },
    format: 'jwk',
  });
  const key = verifierKeyFor(name, publicKey);
  if (key.id.toString('hex') !== hexId)
    throw new AuditError('KEY_INVALID', 'key id does not match name and key');
  return key;
}

/** The note text of a checkpoint: origin, decimal size, base64 root, each ending in a newline. */
export function formatCheckpoint(cp: Checkpoint): string {
  if (!KEY_NAME.test(cp.origin)) throw new AuditError('CHECKPOINT_MALFORMED', 'origin');
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw new AuditError('CHECKPOINT_MALFORMED', 'size');
  if (cp.root.length !== HASH_SIZE) throw new AuditError('CHECKPOINT_MALFORMED', 'root');
  return `${cp.origin}\n${cp.size}\n${cp.root.toString('base64')}\n`;
}

/** Parses checkpoint note text; extension lines are allowed and ignored (C2SP tlog-checkpoint). */
export function parseCheckpoint(text: string): Checkpoint {
  const lines = text.split('\n');
  if (lines.pop() !== '' || lines.length < 3 || lines.some((l) => l === '')) {
    throw new AuditError(
      'CHECKPOINT_MALFORMED',
      'a checkpoint is at least three non-empty lines, each ending in \\n',
    );
  }
  const [origin, sizeLine, rootLine] = lines as [string, string, string];
  if (!KEY_NAME.test(origin)) throw new AuditError('CHECKPOINT_MALFORMED', 'origin line');
  // ASCII decimal without leading zeros.
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) {
    throw new AuditError('CHECKPOINT_MALFORMED', 'tree size line');
  }
  const root = strictBase64(rootLine);
  if (!root || root.length !== HASH_SIZE) throw new AuditError('CHECKPOINT_MALFORMED', 'root hash line');
  return { origin, size: Number(sizeLine), root };
}

/** Signs note text: text, a blank line, then `— <name> <base64(key id || signature)>` (C2SP signed-note). */
export function signNote(text: string, signer: NoteSigner): string {
  if (!text.endsWith('\n') || text.includes('\n\n'))
    throw new AuditError('CHECKPOINT_MALFORMED', 'note text');
  const id = noteKeyId(signer.name, signer.privateKey);
  const signature = sign(null, Buffer.from(text, 'utf8'), signer.privateKey);
  return `${text}\n${SIGNATURE_PREFIX}${signer.name} ${Buffer.concat([id, signature]).toString('base64')}\n`;
}

/**
 * Opens a signed note against one trusted key and returns its text. Lines from other keys are
 * skipped, as C2SP signed-note says; a note with no line from the trusted key is refused.
 */
export function openNote(note: string, key: NoteVerifierKey): string {
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n'))
    throw new AuditError('CHECKPOINT_MALFORMED', 'no blank line before signatures');
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw new AuditError('CHECKPOINT_MALFORMED', 'too many signatures');
  let claimed = false;
  for (const line of lines) {
    if (!line.startsWith(SIGNATURE_PREFIX)) throw new AuditError('CHECKPOINT_MALFORMED', 'signature line');
    const [name, blob, ...rest] = line.slice(SIGNATURE_PREFIX.length).split(' ');
    const bytes = blob === undefined ? null : strictBase64(blob);
    if (!name || !bytes || bytes.length < 5 || rest.length > 0) {
      throw new AuditError('CHECKPOINT_MALFORMED', 'signature line');
    }
    if (name !== key.name || !bytes.subarray(0, 4).equals(key.id)) continue;
    claimed = true;
    if (verify(null, Buffer.from(text, 'utf8'), key.publicKey, bytes.subarray(4))) return text;
  }
  throw claimed
    ? new AuditError('CHECKPOINT_SIGNATURE_INVALID', `the signature by ${key.name} does not verify`)
    : new AuditError(
        'CHECKPOINT_UNTRUSTED_SIGNER',
        `not signed by the trusted key ${key.name}+${key.id.toString('hex')}`,
      );
}

export const signCheckpoint = (cp: Checkpoint, signer: NoteSigner): string =>
  signNote(formatCheckpoint(cp), signer);

/** Opens a signed checkpoint note and parses its body; the origin must be the key's name or `origin`. */
export function verifyCheckpoint(note: string, key: NoteVerifierKey, origin: string = key.name): Checkpoint {
  const cp = parseCheckpoint(openNote(note, key));
  if (cp.origin !== origin) {
    throw new AuditError('CHECKPOINT_ORIGIN_MISMATCH', `checkpoint of ${cp.origin}, expected ${origin}`);
  }
  return cp;
}

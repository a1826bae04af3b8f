// The audit contract against its vectors: RFC 6962 hashing and proofs, C2SP signed notes and checkpoints, entries.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AuditError,
  buildEntry,
  canonicalJson,
  consistencyProof,
  EMPTY_ROOT,
  entryLeafHash,
  formatVerifierKey,
  inclusionProof,
  leafHash,
  MerkleTree,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  rootOf,
  rootsAt,
  signCheckpoint,
  signNote,
  verifierKeyFor,
  verifyCheckpoint,
  verifyConsistency,
  verifyInclusion,
} from '../protocols/audit/index.ts';

const vectors = JSON.parse(
  readFileSync(new URL('../protocols/vectors/audit-rfc6962.json', import.meta.url), 'utf8'),
);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Buffer => Buffer.from(s, 'hex');
const LEAVES: Buffer[] = vectors.leaves.map((l: string) => leafHash(unhex(l)));

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    if (err instanceof AuditError) return err.code;
    throw err;
  }
  return undefined;
};

describe('RFC 6962 Merkle tree', () => {
  it('gives the reference tree heads for sizes 0..8', () => {
    expect(hex(EMPTY_ROOT)).toBe(vectors.roots[0]);
    for (let n = 0; n <= 8; n++) expect(hex(rootOf(LEAVES.slice(0, n))), `size ${n}`).toBe(vectors.roots[n]);
    expect(rootsAt(LEAVES, [3, 0, 8]).map(hex)).toEqual([
      vectors.roots[3],
      vectors.roots[0],
      vectors.roots[8],
    ]);
  });

  it('gives and accepts the reference inclusion proofs', () => {
    for (const v of vectors.inclusion) {
      const proof = inclusionProof(LEAVES.slice(0, v.size), v.index);
      expect(proof.map(hex)).toEqual(v.proof);
      const root = unhex(vectors.roots[v.size]);
      expect(verifyInclusion(LEAVES[v.index] as Buffer, v.index, v.size, proof, root)).toBe(true);
      expect(verifyInclusion(LEAVES[v.index + 1] as Buffer, v.index, v.size, proof, root)).toBe(false);
    }
  });

  it('gives and accepts the reference consistency proofs', () => {
    for (const v of vectors.consistency) {
      const proof = consistencyProof(LEAVES.slice(0, v.to), v.from);
      expect(proof.map(hex)).toEqual(v.proof);
      const [a, b] = [unhex(vectors.roots[v.from]), unhex(vectors.roots[v.to])];
      expect(verifyConsistency(v.from, v.to, a, b, proof)).toBe(true);
      expect(verifyConsistency(v.from, v.to, b, a, proof)).toBe(false);
    }
  });

  it('handles the degenerate sizes as RFC 9162 §2.1.4.2 says', () => {
    const r4 = rootOf(LEAVES.slice(0, 4));
    expect(verifyConsistency(4, 4, r4, r4, [])).toBe(true);
    expect(verifyConsistency(4, 4, r4, rootOf(LEAVES.slice(0, 5)), [])).toBe(false);
    expect(verifyConsistency(0, 8, EMPTY_ROOT, rootOf(LEAVES), [])).toBe(true);
    expect(verifyConsistency(5, 3, r4, r4, [])).toBe(false);
    expect(verifyInclusion(LEAVES[0] as Buffer, 8, 8, [], rootOf(LEAVES))).toBe(false);
    expect(() => inclusionProof(LEAVES, 8)).toThrow(RangeError);
    expect(() => consistencyProof(LEAVES, 9)).toThrow(RangeError);
  });

  it('proves every leaf and every pair of sizes, and refuses every single-byte change (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 70 }), fc.nat(), fc.nat(), fc.nat(), (n, i, m, flip) => {
        const leaves = Array.from({ length: n }, (_, k) => leafHash(Buffer.from(`leaf-${k}`)));
        const root = rootOf(leaves);
        const index = i % n;
        const path = inclusionProof(leaves, index);
        expect(verifyInclusion(leaves[index] as Buffer, index, n, path, root)).toBe(true);
        const size = m % (n + 1);
        const older = rootOf(leaves.slice(0, size));
        const proof = consistencyProof(leaves, size);
        expect(verifyConsistency(size, n, older, root, proof)).toBe(true);
        // One tree answers for every smaller size as a tree cut to that size would.
        const tree = new MerkleTree(leaves);
        expect(tree.root(size)).toEqual(older);
        if (size > 0) {
          const cut = flip % size;
          expect(tree.inclusionProof(cut, size)).toEqual(inclusionProof(leaves.slice(0, size), cut));
          expect(tree.consistencyProof(cut, size)).toEqual(consistencyProof(leaves.slice(0, size), cut));
        }
        if (path.length > 0) {
          const bad = path.map((h) => Buffer.from(h));
          const target = bad[flip % bad.length] as Buffer;
          target[flip % 32] = (target[flip % 32] as number) ^ 1;
          expect(verifyInclusion(leaves[index] as Buffer, index, n, bad, root)).toBe(false);
        }
        if (proof.length > 0) {
          const bad = proof.map((h) => Buffer.from(h));
          const target = bad[flip % bad.length] as Buffer;
          target[flip % 32] = (target[flip % 32] as number) ^ 1;
          expect(verifyConsistency(size, n, older, root, bad)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('C2SP signed notes and checkpoints', () => {
  const go = vectors.signedNote;
  const goSigner = () => {
    const seed = Buffer.from(go.signerKey.split('+').slice(4).join('+'), 'base64').subarray(1);
    const x = Buffer.from(go.verifierKey.split('+').slice(2).join('+'), 'base64').subarray(1);
    return createPrivateKey({
      key: { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: x.toString('base64url') },
      format: 'jwk',
    });
  };

  it('reproduces the signed-note example byte for byte and opens it', () => {
    const key = parseVerifierKey(go.verifierKey);
    expect(formatVerifierKey(key.name, key.publicKey)).toBe(go.verifierKey);
    expect(signNote(go.text, { name: 'PeterNeumann', privateKey: goSigner() })).toBe(go.note);
    expect(openNote(go.note, key)).toBe(go.text);
    expect(codeOf(() => openNote(go.note.replace('cryptography', 'cryptographY'), key))).toBe(
      'CHECKPOINT_SIGNATURE_INVALID',
    );
  });

  it('refuses verifier keys whose id does not match, or that are not Ed25519', () => {
    expect(codeOf(() => parseVerifierKey(go.verifierKey.replace('+c74f20a3+', '+c74f20a4+')))).toBe(
      'KEY_INVALID',
    );
    expect(codeOf(() => parseVerifierKey('PeterNeumann+c74f20a3+AhpcQ=='))).toBe('KEY_INVALID');
    expect(codeOf(() => parseVerifierKey('no plus signs'))).toBe('KEY_INVALID');
  });

  const origin = 'curbside-key.test/audit';
  const { privateKey } = generateKeyPairSync('ed25519');
  const key = verifierKeyFor(origin, privateKey);
  const cp = { origin, size: 8, root: rootOf(LEAVES) };

  it('signs a checkpoint in the tlog-checkpoint layout and verifies it', () => {
    const note = signCheckpoint(cp, { name: origin, privateKey });
    const lines = note.split('\n');
    expect(lines.slice(0, 4)).toEqual([origin, '8', rootOf(LEAVES).toString('base64'), '']);
    expect(lines[4]).toMatch(new RegExp(`^\u2014 ${origin.replaceAll('.', '\\.')} [A-Za-z0-9+/]{91}=$`));
    expect(verifyCheckpoint(note, key)).toEqual(cp);
  });

  it('refuses a checkpoint signed by another key, a forged signature, another origin and bad bodies', () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    const byOther = signCheckpoint(cp, { name: origin, privateKey: other });
    expect(codeOf(() => verifyCheckpoint(byOther, key))).toBe('CHECKPOINT_UNTRUSTED_SIGNER');
    // A line that claims the trusted key id but was made with another key.
    const blob = Buffer.from(byOther.split(' ').at(-1) as string, 'base64');
    key.id.copy(blob, 0);
    const forged = byOther.replace(/ [^ ]+\n$/, ` ${blob.toString('base64')}\n`);
    expect(codeOf(() => verifyCheckpoint(forged, key))).toBe('CHECKPOINT_SIGNATURE_INVALID');
    const elsewhere = signCheckpoint({ ...cp, origin: 'elsewhere' }, { name: origin, privateKey });
    expect(codeOf(() => verifyCheckpoint(elsewhere, key))).toBe('CHECKPOINT_ORIGIN_MISMATCH');
    expect(codeOf(() => parseCheckpoint(`${origin}\n08\n${cp.root.toString('base64')}\n`))).toBe(
      'CHECKPOINT_MALFORMED',
    );
    expect(codeOf(() => parseCheckpoint(`${origin}\n8\n`))).toBe('CHECKPOINT_MALFORMED');
    expect(codeOf(() => openNote('no signatures\n', key))).toBe('CHECKPOINT_MALFORMED');
  });
});

describe('audit entries', () => {
  const input = {
    at: 1_767_261_600_000,
    kind: 'unlock_granted',
    outcome: 'granted' as const,
    code: null,
    deliveryId: 'dlv_1',
    detail: { z: 1, a: { y: [1, 'two', null], b: 47.6 }, gone: undefined },
  };

  it('encodes canonically: sorted members, no whitespace, undefined dropped', () => {
    const e = buildEntry(input, 0, null);
    expect(canonicalJson(e)).toBe(
      '{"at":1767261600000,"code":null,"deliveryId":"dlv_1","detail":{"a":{"b":47.6,"y":[1,"two",null]},"z":1},"index":0,"kind":"unlock_granted","outcome":"granted","prev":null,"v":1}',
    );
    expect(canonicalJson(JSON.parse(canonicalJson(e)))).toBe(canonicalJson(e));
  });

  it('refuses an entry that carries a token, and one the schema does not allow', () => {
    const token = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJkbHYifQ.c2lnbmF0dXJlLWJ5dGVz';
    expect(codeOf(() => buildEntry({ ...input, detail: { token } }, 0, null))).toBe('ENTRY_REFUSED');
    expect(codeOf(() => buildEntry({ ...input, kind: 'Not A Kind' }, 0, null))).toBe('ENTRY_REFUSED');
    // What JSON cannot carry becomes what JSON.stringify makes of it, before hashing.
    expect(buildEntry({ ...input, detail: { n: Number.NaN } }, 0, null).detail).toEqual({ n: null });
  });
});

describe("the project's own vector (protocols/vectors/audit-curbside.json)", () => {
  const v = JSON.parse(
    readFileSync(new URL('../protocols/vectors/audit-curbside.json', import.meta.url), 'utf8'),
  );
  const pkcs8 = Buffer.concat([
    Buffer.from('302e020100300506032b657004220420', 'hex'),
    Buffer.from(v.signerSeedHex, 'hex'),
  ]);
  const privateKey = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });

  it('hashes each canonical entry to its leaf, and the entries chain', () => {
    const leaves = v.entries.map((e: { canonical: string; leafHash: string }) => {
      const parsed = JSON.parse(e.canonical);
      expect(canonicalJson(parsed)).toBe(e.canonical);
      expect(entryLeafHash(parsed).toString('base64')).toBe(e.leafHash);
      expect(leafHash(Buffer.from(e.canonical, 'utf8')).toString('base64')).toBe(e.leafHash);
      return Buffer.from(e.leafHash, 'base64');
    });
    expect(JSON.parse(v.entries[1].canonical).prev).toBe(v.entries[0].leafHash);
    expect(rootOf(leaves).toString('base64')).toBe(v.checkpoint.root);
  });

  it('signs the checkpoint byte for byte and opens it with the verifier key or the PEM key', () => {
    const { origin, size, root, note } = v.checkpoint;
    expect(
      signCheckpoint({ origin, size, root: Buffer.from(root, 'base64') }, { name: origin, privateKey }),
    ).toBe(note);
    expect(formatVerifierKey(origin, privateKey)).toBe(v.verifierKey);
    expect(verifyCheckpoint(note, parseVerifierKey(v.verifierKey)).size).toBe(2);
    expect(verifyCheckpoint(note, verifierKeyFor(origin, createPublicKey(v.publicKeyPem))).size).toBe(2);
  });
});

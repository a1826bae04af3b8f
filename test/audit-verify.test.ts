// The offline verifier against a real exported log: the happy path, then each tampering caught with its own code.
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AuditBundle,
  type AuditEntry,
  AuditError,
  consistencyProof,
  entryLeafHash,
  formatVerifierKey,
  type NoteVerifierKey,
  signCheckpoint,
  verifierKeyFor,
  verifyBundle,
} from '../protocols/audit/index.ts';
import { ORIGIN, openTestLog, play, rewriteHistory, type TestLog } from './helpers/audit-log.ts';

let log: TestLog;
let bundle: AuditBundle;
let key: NoteVerifierKey;

beforeAll(async () => {
  log = await openTestLog();
  await play(log);
  bundle = await log.audit.exportBundle();
  key = verifierKeyFor(ORIGIN, log.privateKey);
});

afterAll(async () => {
  await log?.close();
});

const copy = (): AuditBundle & { entries: AuditEntry[] } =>
  structuredClone(bundle) as AuditBundle & { entries: AuditEntry[] };

const codeOf = (input: unknown, knownCheckpoints: string[] = [], k: NoteVerifierKey = key): string => {
  try {
    verifyBundle(input, { key: k, knownCheckpoints });
  } catch (err) {
    if (err instanceof AuditError) return err.code;
    throw err;
  }
  return 'VERIFIED';
};

const b64 = (e: AuditEntry): string => entryLeafHash(e).toString('base64');

describe('an untouched bundle', () => {
  it('verifies: every entry, three checkpoints, each consistent with the next', () => {
    const verified = verifyBundle(bundle, { key });
    expect(verified.entries).toHaveLength(16);
    expect(verified.checkpoints.map((c) => c.size)).toEqual([4, 12, 16]);
    expect(verified.latest.size).toBe(16);
    expect(bundle.verifierKey).toBe(formatVerifierKey(ORIGIN, log.privateKey));
    expect(bundle.consistency.map((c) => [c.from, c.to])).toEqual([
      [4, 12],
      [12, 16],
    ]);
  });

  it('survives a JSON round trip byte for byte (canonical encoding)', () => {
    expect(codeOf(JSON.parse(JSON.stringify(bundle)))).toBe('VERIFIED');
  });
});

describe('the verifier refuses, each with its own code', () => {
  it('an edited entry: ENTRY_ALTERED', () => {
    const b = copy();
    (b.entries[5] as AuditEntry).detail.driverId = 'driver-9';
    expect(codeOf(b)).toBe('ENTRY_ALTERED');
  });

  it('an edited last entry, or an edit with every later link recomputed: ROOT_MISMATCH', () => {
    const last = copy();
    (last.entries[15] as AuditEntry).outcome = 'denied';
    expect(codeOf(last)).toBe('ROOT_MISMATCH');
    const rechained = copy();
    (rechained.entries[5] as AuditEntry).detail.driverId = 'driver-9';
    for (let i = 6; i < rechained.entries.length; i++) {
      (rechained.entries[i] as AuditEntry).prev = b64(rechained.entries[i - 1] as AuditEntry);
    }
    expect(codeOf(rechained)).toBe('ROOT_MISMATCH');
  });

  it('a deleted entry: ENTRY_MISSING', () => {
    const b = copy();
    b.entries.splice(7, 1);
    expect(codeOf(b)).toBe('ENTRY_MISSING');
  });

  it('a reordered entry: ENTRY_OUT_OF_ORDER', () => {
    const b = copy();
    const [moved] = b.entries.splice(8, 1);
    b.entries.splice(6, 0, moved as AuditEntry);
    expect(codeOf(b)).toBe('ENTRY_OUT_OF_ORDER');
  });

  it('an inserted entry, with or without renumbering what follows: ENTRY_INSERTED', () => {
    const forged = (b: AuditBundle & { entries: AuditEntry[] }): AuditEntry => ({
      ...(b.entries[7] as AuditEntry),
      kind: 'vehicle_locked',
      detail: { commandId: 'cmd_forged', locked: true },
      prev: b64(b.entries[7] as AuditEntry),
      index: 8,
    });
    const plain = copy();
    plain.entries.splice(8, 0, forged(plain));
    expect(codeOf(plain)).toBe('ENTRY_INSERTED');
    const renumbered = copy();
    renumbered.entries.splice(8, 0, forged(renumbered));
    for (let i = 9; i < renumbered.entries.length; i++) (renumbered.entries[i] as AuditEntry).index = i;
    expect(codeOf(renumbered)).toBe('ENTRY_INSERTED');
  });

  it('an entry added after the last checkpoint: ENTRY_NOT_CHECKPOINTED', () => {
    const b = copy();
    const tail = b.entries[15] as AuditEntry;
    b.entries.push({ ...tail, index: 16, prev: b64(tail), kind: 'vehicle_locked', detail: { locked: true } });
    expect(codeOf(b)).toBe('ENTRY_NOT_CHECKPOINTED');
  });

  it('a truncated log presented as complete: LOG_TRUNCATED', () => {
    const b = copy();
    b.entries.splice(13);
    expect(codeOf(b)).toBe('LOG_TRUNCATED');
  });

  it('a truncated log with its newest checkpoint dropped too: LOG_TRUNCATED against a checkpoint the reviewer holds', () => {
    const b = copy();
    b.entries.splice(12);
    b.checkpoints.pop();
    b.consistency.pop();
    // Self-consistent on its own: nothing in the bundle says entries are missing (AUDIT.md §8) …
    expect(codeOf(b)).toBe('VERIFIED');
    // … but a reviewer who fetched a checkpoint earlier (or a witness) catches it.
    expect(codeOf(b, [bundle.checkpoints.at(-1) as string])).toBe('LOG_TRUNCATED');
  });

  it('two checkpoints that cannot both be true (a rewritten log): CHECKPOINTS_INCONSISTENT', async () => {
    const forked = await openTestLog(log.privateKey);
    try {
      await play(forked, [10]);
      const before = await forked.audit.checkpoint();
      // Someone with write access rewrites entry 5 and re-chains the rest, then the key signs again.
      await rewriteHistory(forked.store.db, 5, (e) => {
        e.detail.driverId = 'driver-9';
      });
      await forked.audit.append({
        at: 0,
        kind: 'delivery_completed',
        outcome: 'info',
        code: null,
        deliveryId: 'dlv_b',
        detail: {},
      });
      const rewritten = await forked.audit.exportBundle();
      expect(rewritten.checkpoints).toHaveLength(3);
      expect(codeOf(rewritten)).toBe('CHECKPOINTS_INCONSISTENT');
      // Dropping the old checkpoints from the store hides it in the bundle, not from a reviewer who kept one.
      await forked.store.db.deleteFrom('audit_checkpoints').where('tree_size', '<', 17).execute();
      const cleaned = await forked.audit.exportBundle();
      expect(codeOf(cleaned)).toBe('VERIFIED');
      expect(codeOf(cleaned, [before.note])).toBe('CHECKPOINTS_INCONSISTENT');
    } finally {
      await forked.close();
    }
  });

  it('two roots signed for one size: CHECKPOINTS_INCONSISTENT', () => {
    const b = copy();
    const other = signCheckpoint(
      { origin: ORIGIN, size: 12, root: entryLeafHash(b.entries[0] as AuditEntry) },
      {
        name: ORIGIN,
        privateKey: log.privateKey,
      },
    );
    b.checkpoints.splice(1, 0, other);
    expect(codeOf(b)).toBe('CHECKPOINTS_INCONSISTENT');
  });

  it('a checkpoint signed with the wrong key: CHECKPOINT_UNTRUSTED_SIGNER, or SIGNATURE_INVALID if it claims ours', async () => {
    const stranger = generateKeyPairSync('ed25519').privateKey;
    const other = await openTestLog(stranger);
    try {
      await play(other);
      const signedByStranger = await other.audit.exportBundle();
      expect(codeOf(signedByStranger)).toBe('CHECKPOINT_UNTRUSTED_SIGNER');
      // The same log checked against the stranger's key is fine: the key is all that vouches for it.
      expect(codeOf(signedByStranger, [], verifierKeyFor(ORIGIN, stranger))).toBe('VERIFIED');
    } finally {
      await other.close();
    }
    const b = copy();
    const last = b.checkpoints.at(-1) as string;
    const blob = Buffer.from(last.trimEnd().split(' ').at(-1) as string, 'base64');
    blob[10] = (blob[10] as number) ^ 1;
    b.checkpoints[b.checkpoints.length - 1] = last.replace(/ \S+\n$/, ` ${blob.toString('base64')}\n`);
    expect(codeOf(b)).toBe('CHECKPOINT_SIGNATURE_INVALID');
  });

  it('a key for another log: CHECKPOINT_ORIGIN_MISMATCH', () => {
    expect(codeOf(bundle, [], verifierKeyFor('elsewhere.example/log', log.privateKey))).toBe(
      'CHECKPOINT_ORIGIN_MISMATCH',
    );
  });

  it('a bundle missing parts, or an entry that is not an entry: BUNDLE_MALFORMED, ENTRY_MALFORMED', () => {
    const noProof = copy();
    noProof.consistency.shift();
    expect(codeOf(noProof)).toBe('BUNDLE_MALFORMED');
    const noCheckpoint = copy();
    noCheckpoint.checkpoints = [];
    noCheckpoint.consistency = [];
    expect(codeOf(noCheckpoint)).toBe('BUNDLE_MALFORMED');
    expect(codeOf({ ...copy(), extra: 1 })).toBe('BUNDLE_MALFORMED');
    const bad = copy();
    (bad.entries[3] as Partial<AuditEntry>).kind = undefined;
    expect(codeOf(bad)).toBe('ENTRY_MALFORMED');
  });

  it('a consistency proof that is not for these checkpoints: CHECKPOINTS_INCONSISTENT', () => {
    const b = copy();
    const leaves = b.entries.map(entryLeafHash);
    (b.consistency[0] as { proof: string[] }).proof = consistencyProof(leaves.slice(0, 13), 4).map((h) =>
      h.toString('base64'),
    );
    expect(codeOf(b)).toBe('CHECKPOINTS_INCONSISTENT');
  });
});

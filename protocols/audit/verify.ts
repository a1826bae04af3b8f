// Owns the offline verifier: a short pipeline of checks over a bundle, each failing with its own code (AUDIT.md §7).
import { type AuditBundle, AuditBundleSchema } from './bundle.ts';
import { type Checkpoint, type NoteVerifierKey, verifyCheckpoint } from './checkpoint.ts';
import { type AuditEntry, AuditEntrySchema, entryLeafHash } from './entry.ts';
import { AuditError } from './errors.ts';
import { rootsAt, verifyConsistency } from './merkle.ts';

export interface VerifyBundleOptions {
  /** The checkpoint key the reviewer trusts, obtained out of band; the bundle's own copy is ignored. */
  key: NoteVerifierKey;
  /** Checkpoints the reviewer holds from elsewhere (fetched earlier, from a witness): the log must extend each. */
  knownCheckpoints?: readonly string[];
}

export interface VerifiedLog {
  origin: string;
  entries: AuditEntry[];
  leafHashes: Buffer[];
  /** The bundle's checkpoints, by increasing size, each proven consistent with the next. */
  checkpoints: Checkpoint[];
  /** The checkpoint covering every entry. */
  latest: Checkpoint;
}

const b64 = (h: Buffer): string => h.toString('base64');

function parseBundle(input: unknown): AuditBundle {
  const parsed = AuditBundleSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new AuditError(
    'BUNDLE_MALFORMED',
    `${issue?.path.join('.') || 'bundle'}: ${issue?.message ?? 'invalid'}`,
  );
}

/** Step 2: every checkpoint is signed by the trusted key, for this log. */
function openCheckpoints(notes: readonly string[], key: NoteVerifierKey, origin: string): Checkpoint[] {
  return notes.map((note, i) => {
    try {
      return verifyCheckpoint(note, key, origin);
    } catch (err) {
      if (err instanceof AuditError) throw new AuditError(err.code, `checkpoint ${i}: ${err.message}`);
      throw err;
    }
  });
}

/** Step 3: the checkpoints describe one append-only history (RFC 6962 §2.1.2), whatever the entries say. */
function checkConsistency(bundle: AuditBundle, opened: Checkpoint[]): Checkpoint[] {
  if (opened.length === 0) throw new AuditError('BUNDLE_MALFORMED', 'no signed checkpoint to verify against');
  const bySize = new Map<number, Checkpoint>();
  for (const cp of opened) {
    const seen = bySize.get(cp.size);
    if (seen && !seen.root.equals(cp.root)) {
      throw new AuditError('CHECKPOINTS_INCONSISTENT', `two different roots signed for tree size ${cp.size}`);
    }
    bySize.set(cp.size, cp);
  }
  const sorted = [...bySize.values()].sort((a, b) => a.size - b.size);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1] as Checkpoint;
    const b = sorted[i] as Checkpoint;
    const record = bundle.consistency.find((c) => c.from === a.size && c.to === b.size);
    if (!record) throw new AuditError('BUNDLE_MALFORMED', `no consistency proof from ${a.size} to ${b.size}`);
    const proof = record.proof.map((h) => Buffer.from(h, 'base64'));
    if (!verifyConsistency(a.size, b.size, a.root, b.root, proof)) {
      throw new AuditError(
        'CHECKPOINTS_INCONSISTENT',
        `the checkpoints at sizes ${a.size} and ${b.size} cannot both be true: the log forked or was rewritten`,
      );
    }
  }
  return sorted;
}

/**
 * Step 4: every entry parses, sits at its own index, and names its predecessor's hash. The first
 * break found says what happened to the sequence (AUDIT.md §7 lists which edit gives which code).
 */
function checkEntries(raw: readonly unknown[]): { entries: AuditEntry[]; leafHashes: Buffer[] } {
  const entries: AuditEntry[] = [];
  const leafHashes: Buffer[] = [];
  const position = new Map<string, number>();
  for (let p = 0; p < raw.length; p++) {
    const parsed = AuditEntrySchema.safeParse(raw[p]);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AuditError(
        'ENTRY_MALFORMED',
        `entry at position ${p}: ${issue?.path.join('.')}: ${issue?.message}`,
      );
    }
    const e = parsed.data;
    if (e.index !== p) {
      if (e.index < p) {
        throw new AuditError(
          'ENTRY_INSERTED',
          `index ${e.index} appears twice (positions ${e.index} and ${p})`,
        );
      }
      const later = raw.slice(p + 1).some((r) => (r as { index?: unknown } | null)?.index === p);
      throw later
        ? new AuditError('ENTRY_OUT_OF_ORDER', `position ${p} holds entry ${e.index}; entry ${p} comes later`)
        : new AuditError('ENTRY_MISSING', `entry ${p} is missing: position ${p} holds entry ${e.index}`);
    }
    const expected = p === 0 ? null : b64(leafHashes[p - 1] as Buffer);
    if (e.prev !== expected) {
      const earlier = e.prev === null ? undefined : position.get(e.prev);
      if (earlier !== undefined && earlier < p - 1) {
        throw new AuditError(
          'ENTRY_INSERTED',
          `entry ${p} follows entry ${earlier}: entries ${earlier + 1}..${p - 1} were put in after it was written`,
        );
      }
      throw new AuditError(
        'ENTRY_ALTERED',
        p === 0
          ? 'entry 0 names a predecessor: it was altered, or the log does not start here'
          : `entry ${p - 1} was altered after entry ${p} was written: its hash is not the one entry ${p} recorded`,
      );
    }
    const leaf = entryLeafHash(e);
    position.set(b64(leaf), p);
    entries.push(e);
    leafHashes.push(leaf);
  }
  return { entries, leafHashes };
}

/** Steps 5-6: the signed checkpoints cover exactly these entries, and the entries hash to their roots. */
function checkCoverage(leafHashes: readonly Buffer[], checkpoints: readonly Checkpoint[]): void {
  const latest = checkpoints[checkpoints.length - 1] as Checkpoint;
  if (latest.size > leafHashes.length) {
    throw new AuditError(
      'LOG_TRUNCATED',
      `the latest checkpoint covers ${latest.size} entries, the bundle holds ${leafHashes.length}`,
    );
  }
  if (leafHashes.length > latest.size) {
    throw new AuditError(
      'ENTRY_NOT_CHECKPOINTED',
      `entries ${latest.size}..${leafHashes.length - 1} are under no signed checkpoint`,
    );
  }
  const roots = rootsAt(
    leafHashes,
    checkpoints.map((c) => c.size),
  );
  checkpoints.forEach((cp, i) => {
    if (!cp.root.equals(roots[i] as Buffer)) {
      throw new AuditError(
        'ROOT_MISMATCH',
        `entries 0..${cp.size - 1} do not hash to the root signed at size ${cp.size}: an entry was edited`,
      );
    }
  });
}

/** Step 7: a checkpoint the reviewer already holds must be a prefix of this log. */
function checkKnown(leafHashes: readonly Buffer[], known: readonly Checkpoint[]): void {
  for (const cp of known) {
    if (cp.size > leafHashes.length) {
      throw new AuditError(
        'LOG_TRUNCATED',
        `a checkpoint you hold covers ${cp.size} entries; the bundle holds ${leafHashes.length}`,
      );
    }
    const [root] = rootsAt(leafHashes, [cp.size]);
    if (!cp.root.equals(root as Buffer)) {
      throw new AuditError(
        'CHECKPOINTS_INCONSISTENT',
        `the checkpoint you hold at size ${cp.size} and this log cannot both be true: the log forked or was rewritten`,
      );
    }
  }
}

/** Re-checks a bundle with no network and no database; throws AuditError at the first failure. */
export function verifyBundle(input: unknown, options: VerifyBundleOptions): VerifiedLog {
  const bundle = parseBundle(input);
  if (options.key.name !== bundle.origin) {
    throw new AuditError(
      'CHECKPOINT_ORIGIN_MISMATCH',
      `the bundle is of log ${bundle.origin}; the key is for ${options.key.name}`,
    );
  }
  const opened = openCheckpoints(bundle.checkpoints, options.key, bundle.origin);
  const known = openCheckpoints(options.knownCheckpoints ?? [], options.key, bundle.origin);
  const checkpoints = checkConsistency(bundle, opened);
  const { entries, leafHashes } = checkEntries(bundle.entries);
  checkCoverage(leafHashes, checkpoints);
  checkKnown(leafHashes, known);
  return {
    origin: bundle.origin,
    entries,
    leafHashes,
    checkpoints,
    latest: checkpoints[checkpoints.length - 1] as Checkpoint,
  };
}

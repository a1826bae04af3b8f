// Owns the audit log service: signed checkpoints (periodic and on demand), entry pages, proofs and export bundles.

import type { KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import {
  AUDIT_BUNDLE_FORMAT,
  type AuditBundle,
  type AuditEntry,
  type AuditInput,
  formatVerifierKey,
  MerkleTree,
  signCheckpoint,
} from '../../protocols/audit/index.ts';
import { ApiError } from '../errors.ts';
import {
  type AppendedEntry,
  appendAudit,
  auditLeafHashes,
  auditTreeSize,
  findAuditIndex,
  insertCheckpoint,
  latestCheckpoint,
  listCheckpoints,
  readAuditEntries,
  type StoredCheckpoint,
} from '../store/audit.ts';
import type { Write } from '../store/group-commit.ts';
import type { Database } from '../store/schema.ts';

/** The dedicated checkpoint key; its C2SP key name is the log's origin. */
export interface AuditSigner {
  origin: string;
  privateKey: KeyObject;
}

export interface AuditLogDeps {
  db: Kysely<Database>;
  /**
   * Entries that stand alone (a key's use) are written through here when given (store.write), so they share
   * a commit with the decisions being written at the same time; each still commits or fails on its own.
   */
  write?: Write;
  /** Null when no checkpoint key is configured: entries are still written, checkpoints are refused. */
  signer: AuditSigner | null;
  now: () => number;
}

export interface KeyUse {
  keyId: string;
  /** The key's scopes and binding, as its grant says (gateway/access/api-keys.ts). */
  scopes: readonly string[];
  ownerId: string | null;
  carrierId: string | null;
  method: string;
  /** The route pattern, never the raw URL: ids are in deliveryId or the entries that follow. */
  route: string;
  requestId: string;
  deliveryId: string | null;
}

export const MAX_ENTRIES_PAGE = 1000;

const b64 = (h: Buffer): string => h.toString('base64');

export function createAuditLog(deps: AuditLogDeps) {
  const { db, signer, now } = deps;
  const appendAlone = (input: AuditInput): Promise<AppendedEntry> =>
    deps.write ? deps.write((trx) => appendAudit(trx, input)) : appendAudit(db, input);

  function requireSigner(): AuditSigner {
    if (!signer) throw new ApiError('AUDIT_UNAVAILABLE');
    return signer;
  }

  /** The checkpoint of the whole log as it is now, signing and storing a new one if the log grew. */
  async function checkpoint(): Promise<StoredCheckpoint> {
    const size = await auditTreeSize(db);
    const latest = await latestCheckpoint(db);
    if (latest && latest.size >= size) return latest;
    const { origin, privateKey } = requireSigner();
    // Entries below size never change, so this head stays true whatever is appended meanwhile.
    const root = new MerkleTree(await auditLeafHashes(db, size)).root();
    const note = signCheckpoint({ origin, size, root }, { name: origin, privateKey });
    const made: StoredCheckpoint = { size, root, note, createdAt: now() };
    await insertCheckpoint(db, made);
    return made;
  }

  /** The size proofs default to: the latest signed checkpoint's, so a reviewer can check them against it. */
  async function signedSize(size: number | undefined): Promise<number> {
    const total = await auditTreeSize(db);
    const resolved = size ?? (await latestCheckpoint(db))?.size ?? (await checkpoint()).size;
    if (resolved > total)
      throw new ApiError('AUDIT_RANGE_INVALID', { detail: `the log holds ${total} entries` });
    return resolved;
  }

  async function entries(
    from: number,
    to: number | undefined,
  ): Promise<{ treeSize: number; entries: AuditEntry[] }> {
    const treeSize = await auditTreeSize(db);
    const end = Math.min(to ?? treeSize, treeSize, from + MAX_ENTRIES_PAGE);
    if (from > treeSize || (to !== undefined && to < from)) {
      throw new ApiError('AUDIT_RANGE_INVALID', { detail: `from..to must lie in 0..${treeSize}` });
    }
    return { treeSize, entries: await readAuditEntries(db, from, end) };
  }

  async function inclusion(query: { index?: number; leafHash?: Buffer; treeSize?: number }) {
    const treeSize = await signedSize(query.treeSize);
    const index = query.leafHash ? await findAuditIndex(db, query.leafHash) : (query.index ?? null);
    if (index === null) throw new ApiError('NOT_FOUND', { detail: 'no entry with that leaf hash' });
    if (index >= treeSize) {
      throw new ApiError('AUDIT_RANGE_INVALID', {
        detail: `entry ${index} is not in the tree of size ${treeSize}`,
      });
    }
    const leaves = await auditLeafHashes(db, treeSize);
    return {
      index,
      treeSize,
      leafHash: b64(leaves[index] as Buffer),
      proof: new MerkleTree(leaves).inclusionProof(index).map(b64),
    };
  }

  async function consistency(from: number, to: number | undefined) {
    const treeSize = await signedSize(to);
    if (from > treeSize)
      throw new ApiError('AUDIT_RANGE_INVALID', { detail: `from must be at most ${treeSize}` });
    const tree = new MerkleTree(await auditLeafHashes(db, treeSize));
    return { from, to: treeSize, proof: tree.consistencyProof(from).map(b64) };
  }

  /** Everything up to a fresh checkpoint: entries, every stored checkpoint, proofs between successive ones. */
  async function exportBundle(): Promise<AuditBundle> {
    const { origin, privateKey } = requireSigner();
    const head = await checkpoint();
    const tree = new MerkleTree(await auditLeafHashes(db, head.size));
    const checkpoints = await listCheckpoints(db, head.size);
    return {
      format: AUDIT_BUNDLE_FORMAT,
      origin,
      exportedAt: now(),
      verifierKey: formatVerifierKey(origin, privateKey),
      entries: await readAuditEntries(db, 0, head.size),
      checkpoints: checkpoints.map((c) => c.note),
      consistency: checkpoints.slice(1).map((c, i) => {
        const from = (checkpoints[i] as StoredCheckpoint).size;
        return { from, to: c.size, proof: tree.consistencyProof(from, c.size).map(b64) };
      }),
    };
  }

  /** One entry per mutating request: which key, on which route (the "API key use by scope"). */
  function recordKeyUse(use: KeyUse): Promise<AppendedEntry> {
    return appendAlone(keyUseEntry(use));
  }

  /** The entry of a key's use, to be written with the request's first unit of work (http/idempotency-scope.ts). */
  function keyUseEntry(use: KeyUse): AuditInput {
    return {
      at: now(),
      kind: 'api_key_used',
      outcome: 'info',
      code: null,
      deliveryId: use.deliveryId,
      detail: {
        keyId: use.keyId,
        scope: use.scopes.join(','),
        ownerId: use.ownerId,
        carrierId: use.carrierId,
        method: use.method,
        route: use.route,
        requestId: use.requestId,
      },
    };
  }

  return {
    origin: signer?.origin ?? null,
    append: appendAlone,
    checkpoint,
    entries,
    inclusion,
    consistency,
    exportBundle,
    recordKeyUse,
    keyUseEntry,
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

/**
 * Signs a checkpoint every intervalMs while the log has a key (none without one: the log is then kept unsigned,
 * and says so once). `now()` signs one at once (at shutdown: the last decisions get a signed head).
 */
export function scheduleCheckpoints(
  audit: AuditLog,
  options: {
    intervalMs: number;
    logger: Logger;
    /** With several replicas: runs the signing only on the replica that holds the job (gateway/cluster/). */
    gate?: (sign: () => Promise<unknown>) => Promise<unknown>;
  },
): { now(): Promise<unknown>; stop(): void } {
  const { logger } = options;
  const gate = options.gate ?? ((sign) => sign());
  if (!audit.origin) logger.warn({ event: 'audit.no_key' }, 'no checkpoint key: the audit log is not signed');
  const now = (): Promise<unknown> =>
    audit.origin
      ? gate(() => audit.checkpoint()).catch((err: unknown) => logger.error({ err }, 'checkpoint failed'))
      : Promise.resolve();
  const timer = setInterval(now, options.intervalMs);
  timer.unref();
  return { now, stop: () => clearInterval(timer) };
}

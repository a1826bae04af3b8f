// Owns the export bundle: everything a reviewer needs to re-check the log offline, in one JSON document.
import { z } from 'zod';
import { Base64Hash } from './entry.ts';

export const AUDIT_BUNDLE_FORMAT = 'curbside-audit-bundle/v1';

const Size = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const ConsistencyProofSchema = z.strictObject({
  from: Size,
  to: Size,
  /** RFC 6962 §2.1.2 PROOF(from, D[to]), base64 hashes. */
  proof: z.array(Base64Hash).max(128),
});
export type ConsistencyProofRecord = z.infer<typeof ConsistencyProofSchema>;

export const AuditBundleSchema = z.strictObject({
  format: z.literal(AUDIT_BUNDLE_FORMAT),
  /** The log's origin: the first line of its checkpoints and the name of its checkpoint key. */
  origin: z.string().min(1).max(256),
  exportedAt: Size,
  /** The checkpoint key as a C2SP verifier key, for reference: the verifier trusts only the key it is given. */
  verifierKey: z.string().max(512),
  /** Every entry from index 0, in order; each is checked against AuditEntrySchema by the verifier. */
  entries: z.array(z.unknown()),
  /** Signed checkpoint notes, by increasing tree size; the last covers every entry. */
  checkpoints: z.array(z.string().max(4096)).max(100_000),
  /** A consistency proof between each two successive checkpoints. */
  consistency: z.array(ConsistencyProofSchema),
});
export type AuditBundle = z.infer<typeof AuditBundleSchema>;

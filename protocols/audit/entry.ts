// Owns the audit entry: its fields (one zod schema), its canonical bytes and its leaf hash (AUDIT.md §2-3).
import { z } from 'zod';
import { AuditError } from './errors.ts';
import { leafHash } from './merkle.ts';

export const AUDIT_ENTRY_VERSION = 1;

/** A SHA-256 hash in standard base64 with padding (RFC 4648 §4), as C2SP checkpoints write root hashes. */
export const Base64Hash = z.string().regex(/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/);

export const AuditEntrySchema = z.strictObject({
  v: z.literal(AUDIT_ENTRY_VERSION),
  /** Position in the log, from 0, without gaps. */
  index: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  /** Leaf hash of entry index - 1; null for entry 0. A second, linear chain beside the tree (AUDIT.md §3). */
  prev: Base64Hash.nullable(),
  /** The gateway's clock, ms since the epoch, when the decision was taken. */
  at: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  kind: z.string().regex(/^[a-z][a-z0-9_]{0,47}$/),
  outcome: z.enum(['granted', 'denied', 'info']),
  code: z.string().min(1).max(64).nullable(),
  deliveryId: z.string().min(1).max(64).nullable(),
  detail: z.record(z.string(), z.unknown()),
});
export type AuditEntry = z.infer<typeof AuditEntrySchema>;

/** What a writer supplies; the log assigns v, index and prev. */
export type AuditInput = Omit<AuditEntry, 'v' | 'index' | 'prev'>;

/**
 * Canonical JSON (RFC 8785 JCS for the values JSON.parse can produce): members sorted by UTF-16 code
 * units, no whitespace, numbers and strings as ECMAScript serializes them. Parsing the output and
 * encoding it again gives the same bytes, which is what lets a verifier rehash an entry it read as JSON.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new AuditError('ENTRY_REFUSED', 'a number that JSON cannot carry');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const members = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${members.join(',')}}`;
  }
  throw new AuditError('ENTRY_REFUSED', `a ${typeof value} is not JSON`);
}

/** The bytes that are hashed: UTF-8 of the canonical JSON of the whole entry. */
export const encodeEntry = (entry: AuditEntry): Buffer => Buffer.from(canonicalJson(entry), 'utf8');

/** The entry's RFC 6962 leaf hash. */
export const entryLeafHash = (entry: AuditEntry): Buffer => leafHash(encodeEntry(entry));

/** A compact JWS anywhere in an entry: tokens are logged as their SHA-256 only (PROTOCOL.md §6). */
const COMPACT_JWS = /eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}/;

/** An entry and its canonical text: the text is what is hashed and stored, computed once. */
export interface EncodedEntry {
  entry: AuditEntry;
  text: string;
}

/**
 * Builds entry `index` from a writer's input: drops what JSON drops (undefined members), checks the
 * schema and refuses an entry that carries a token. Throws ENTRY_REFUSED; nothing is written then.
 */
export function buildEncodedEntry(input: AuditInput, index: number, prev: Buffer | null): EncodedEntry {
  let plain: unknown;
  try {
    plain = JSON.parse(
      JSON.stringify({ ...input, v: AUDIT_ENTRY_VERSION, index, prev: prev?.toString('base64') ?? null }),
    );
  } catch (err) {
    throw new AuditError('ENTRY_REFUSED', `not JSON: ${(err as Error).message}`);
  }
  const parsed = AuditEntrySchema.safeParse(plain);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AuditError(
      'ENTRY_REFUSED',
      `${issue?.path.join('.') || 'entry'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const text = canonicalJson(parsed.data);
  if (COMPACT_JWS.test(text))
    throw new AuditError('ENTRY_REFUSED', 'an entry may hold a token hash, never a token');
  return { entry: parsed.data, text };
}

/** buildEncodedEntry without the text. */
export const buildEntry = (input: AuditInput, index: number, prev: Buffer | null): AuditEntry =>
  buildEncodedEntry(input, index, prev).entry;

// Owns idempotency records (IETF httpapi Idempotency-Key draft): claim a key, store its response, replay it.
import { createHash } from 'node:crypto';
import type { Db } from '../store/db.ts';

export interface IdempotencyPolicy {
  /** How long a key and its stored response are kept; a key is free again after it (documented: 24 h). */
  retentionMs: number;
  /**
   * A request still marked in flight after this long is taken to be lost (its replica died) and the next
   * request with the key runs again. Longer than any request may take (the car's ack timeout and more).
   */
  inFlightMs: number;
}

export const DEFAULT_IDEMPOTENCY_POLICY: IdempotencyPolicy = {
  retentionMs: 24 * 3_600_000,
  inFlightMs: 5 * 60_000,
};

export type Claim =
  | { kind: 'claimed' }
  /** The request's effect committed (its key was marked with it) but its response was never stored: a crash. */
  | { kind: 'response_lost' }
  | { kind: 'replay'; status: number; contentType: string; body: string; sealed: boolean }
  | { kind: 'reused' }
  | { kind: 'in_flight' };

/** JSON with object keys sorted, so two bodies that differ only in key order are the same request. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The request a key stands for: method, path and body; the draft asks for a 422 when it differs. */
export const fingerprintOf = (method: string, url: string, body: unknown): string =>
  createHash('sha256')
    .update(`${method} ${url}\n${canonicalJson(body)}`)
    .digest('hex');

interface ClaimInput {
  apiKeyId: string;
  key: string;
  fingerprint: string;
  now: number;
}

/**
 * Claims a key for one request. Keys are scoped per API key. The primary key makes the claim atomic across
 * replicas sharing the store: of two racing requests exactly one inserts, the other sees its row.
 */
export async function claimIdempotencyKey(
  db: Db,
  input: ClaimInput,
  policy: IdempotencyPolicy,
): Promise<Claim> {
  const { apiKeyId, key, fingerprint, now } = input;
  for (let tries = 0; tries < 4; tries++) {
    const inserted = await db
      .insertInto('idempotency_keys')
      .values({
        api_key_id: apiKeyId,
        idem_key: key,
        fingerprint,
        status: 'in_flight',
        response_status: null,
        response_type: null,
        response_body: null,
        response_sealed: 0,
        created_at: now,
        expires_at: now + policy.retentionMs,
      })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1) return { kind: 'claimed' };
    const row = await db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('api_key_id', '=', apiKeyId)
      .where('idem_key', '=', key)
      .executeTakeFirst();
    if (!row) continue;
    if (Number(row.expires_at) <= now) {
      await db
        .deleteFrom('idempotency_keys')
        .where('api_key_id', '=', apiKeyId)
        .where('idem_key', '=', key)
        .where('expires_at', '=', row.expires_at)
        .execute();
      continue;
    }
    if (row.fingerprint !== fingerprint) return { kind: 'reused' };
    if (row.status === 'done') {
      return {
        kind: 'replay',
        status: Number(row.response_status),
        contentType: row.response_type ?? 'application/json',
        body: row.response_body ?? '',
        sealed: row.response_sealed === 1,
      };
    }
    if (Number(row.created_at) + policy.inFlightMs > now) return { kind: 'in_flight' };
    // Past the lease, and the effect is in the store: running the request again would do it twice.
    if (row.status === 'committed') return { kind: 'response_lost' };
    const taken = await db
      .updateTable('idempotency_keys')
      .set({ created_at: now, expires_at: now + policy.retentionMs })
      .where('api_key_id', '=', apiKeyId)
      .where('idem_key', '=', key)
      .where('status', '=', 'in_flight')
      .where('created_at', '=', row.created_at)
      .executeTakeFirst();
    if (Number(taken.numUpdatedRows) === 1) return { kind: 'claimed' };
  }
  return { kind: 'in_flight' };
}

/** Stores the final response; later requests with the key and the same body get it replayed. */
export async function completeIdempotencyKey(
  db: Db,
  k: { apiKeyId: string; key: string; status: number; contentType: string; body: string; sealed?: boolean },
): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({
      status: 'done',
      response_status: k.status,
      response_type: k.contentType,
      response_body: k.body,
      response_sealed: k.sealed ? 1 : 0,
    })
    .where('api_key_id', '=', k.apiKeyId)
    .where('idem_key', '=', k.key)
    .where('status', 'in', ['in_flight', 'committed'])
    .execute();
}

/**
 * Marks a held key: the request's effect is being committed, in this transaction (idempotency-scope.ts). A
 * crash before the response is stored then leaves a `committed` key, which a retry is refused on.
 */
export async function markIdempotencyCommitted(db: Db, apiKeyId: string, key: string): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({ status: 'committed' })
    .where('api_key_id', '=', apiKeyId)
    .where('idem_key', '=', key)
    .where('status', '=', 'in_flight')
    .execute();
}

/**
 * Frees a key whose request ended in a failure that says a retry is safe (the service made sure of it, e.g. by
 * settling an earlier command first), so the client's retry with it runs again.
 */
export async function releaseIdempotencyKey(db: Db, apiKeyId: string, key: string): Promise<void> {
  await db
    .deleteFrom('idempotency_keys')
    .where('api_key_id', '=', apiKeyId)
    .where('idem_key', '=', key)
    .where('status', 'in', ['in_flight', 'committed'])
    .execute();
}

/** Deletes every record past its retention; returns how many. */
export async function purgeIdempotencyKeys(db: Db, now: number): Promise<number> {
  const r = await db.deleteFrom('idempotency_keys').where('expires_at', '<=', now).executeTakeFirst();
  return Number(r.numDeletedRows);
}

// Owns API keys as grants: the scopes, the caller kinds they make up, the owner/carrier binding, and key storage.
import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../store/db.ts';
import { prepared } from '../store/prepared.ts';

/**
 * One scope per capability. `admin` is every scope without a binding: the development key and operators.
 * Each kind of caller gets one set (CALLER_KINDS); a key may hold several scopes of the same binding.
 */
export const SCOPES = [
  'deliveries',
  'commands',
  'vehicles',
  'locations',
  'parking',
  'blocking',
  'timelines:read',
  'webhooks',
  'admin',
] as const;
export type Scope = (typeof SCOPES)[number];

/** Which binding a scope needs: a carrier, an owner, either (or none), or none at all. */
const SCOPE_BINDING: Record<Scope, 'carrier' | 'owner' | 'any' | 'bound' | 'none'> = {
  deliveries: 'carrier',
  commands: 'carrier',
  vehicles: 'owner',
  locations: 'owner',
  parking: 'owner',
  blocking: 'owner',
  'timelines:read': 'any',
  webhooks: 'bound',
  admin: 'none',
};

/** The scope set of each kind of caller, as the README documents them. */
export const CALLER_KINDS = {
  /** A carrier's delivery backend: schedules and reads its deliveries, subscribes to their events. */
  carrier: ['deliveries', 'webhooks'],
  /** A driver backend: unlock and lock for the carrier's drivers. */
  driver: ['commands'],
  /** A customer account backend: the owner's vehicles, locations, parking, blocking and events. */
  customer: ['vehicles', 'locations', 'parking', 'blocking', 'webhooks'],
  /** A reviewer: read-only timelines (of one owner or carrier, or of all when unbound). */
  reviewer: ['timelines:read'],
} as const satisfies Record<string, readonly Scope[]>;

export interface Grant {
  scopes: Scope[];
  ownerId: string | null;
  carrierId: string | null;
}

/** The authenticated caller, as routes see it. */
export interface Caller extends Grant {
  keyId: string;
}

export interface ApiKeyRecord extends Grant {
  id: string;
  label: string;
  createdAt: number;
  revokedAt: number | null;
}

export const ADMIN_GRANT: Grant = { scopes: ['admin'], ownerId: null, carrierId: null };

export class GrantError extends Error {
  readonly code = 'GRANT_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'GrantError';
  }
}

const isScope = (s: string): s is Scope => (SCOPES as readonly string[]).includes(s);

/** Expands caller kinds to their scopes and checks that scopes and binding fit together; deny by default. */
export function parseGrant(input: {
  scopes: string[];
  ownerId?: string | null;
  carrierId?: string | null;
}): Grant {
  const ownerId = input.ownerId ?? null;
  const carrierId = input.carrierId ?? null;
  const scopes = new Set<Scope>();
  for (const s of input.scopes) {
    if (s in CALLER_KINDS) for (const k of CALLER_KINDS[s as keyof typeof CALLER_KINDS]) scopes.add(k);
    else if (isScope(s)) scopes.add(s);
    else throw new GrantError(`unknown scope ${JSON.stringify(s)}; scopes: ${SCOPES.join(', ')}`);
  }
  if (scopes.size === 0) throw new GrantError('a key needs at least one scope');
  if (ownerId !== null && carrierId !== null)
    throw new GrantError('a key is bound to an owner or a carrier, not both');
  if (ownerId !== null && !/^[A-Za-z0-9_-]{1,64}$/.test(ownerId))
    throw new GrantError('owner id is malformed');
  if (carrierId !== null && !/^[A-Za-z0-9_-]{1,64}$/.test(carrierId))
    throw new GrantError('carrier id is malformed');
  for (const s of scopes) {
    const need = SCOPE_BINDING[s];
    if (need === 'carrier' && carrierId === null) throw new GrantError(`scope ${s} needs --carrier`);
    if (need === 'owner' && ownerId === null) throw new GrantError(`scope ${s} needs --owner`);
    if (need === 'bound' && ownerId === null && carrierId === null)
      throw new GrantError(`scope ${s} needs --owner or --carrier`);
    if (need === 'none' && (ownerId !== null || carrierId !== null))
      throw new GrantError(`scope ${s} cannot be bound to an owner or a carrier`);
  }
  return { scopes: SCOPES.filter((s) => scopes.has(s)), ownerId, carrierId };
}

/** The caller holds one of these scopes (admin holds them all). */
export const hasScope = (caller: Grant, wanted: readonly Scope[]): boolean =>
  caller.scopes.includes('admin') || wanted.some((s) => caller.scopes.includes(s));

/** Keys are 192 random bits, so one SHA-256 is enough: there is nothing to brute-force as with passwords. */
export const hashApiKey = (key: string): string => createHash('sha256').update(key).digest('hex');

export const newApiKeySecret = (): string => `ck_${randomBytes(24).toString('base64url')}`;

const toScopes = (stored: string): Scope[] => stored.split(',').filter(isScope);

export async function insertGrantedKey(
  db: Db,
  k: { id: string; hash: string; label: string; createdAt: number; grant: Grant },
): Promise<void> {
  await db
    .insertInto('api_keys')
    .values({
      id: k.id,
      hash: k.hash,
      label: k.label,
      created_at: k.createdAt,
      scopes: k.grant.scopes.join(','),
      owner_id: k.grant.ownerId,
      carrier_id: k.grant.carrierId,
      revoked_at: null,
    })
    .execute();
}

/** The caller behind a key hash, or null when unknown or revoked. */
const selectCaller = prepared((db, hash: string) =>
  db
    .selectFrom('api_keys')
    .select(['id', 'scopes', 'owner_id', 'carrier_id'])
    .where('hash', '=', hash)
    .where('revoked_at', 'is', null),
);

export async function findCallerByHash(db: Db, hash: string): Promise<Caller | null> {
  const row = (await selectCaller(db, hash)).rows[0];
  if (!row) return null;
  return { keyId: row.id, scopes: toScopes(row.scopes), ownerId: row.owner_id, carrierId: row.carrier_id };
}

/** The key is known and not revoked: a long-lived stream asks again now and then (console/stream.ts). */
export async function isKeyActive(db: Db, id: string): Promise<boolean> {
  const row = await db
    .selectFrom('api_keys')
    .select('id')
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return row !== undefined;
}

export async function listApiKeys(db: Db): Promise<ApiKeyRecord[]> {
  const rows = await db
    .selectFrom('api_keys')
    .select(['id', 'label', 'scopes', 'owner_id', 'carrier_id', 'created_at', 'revoked_at'])
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return rows.map((r) => ({
    id: r.id,
    label: r.label,
    scopes: toScopes(r.scopes),
    ownerId: r.owner_id,
    carrierId: r.carrier_id,
    createdAt: Number(r.created_at),
    revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
  }));
}

/** Revokes a key; false when there is no such key or it was already revoked. */
export async function revokeApiKey(db: Db, id: string, at: number): Promise<boolean> {
  const r = await db
    .updateTable('api_keys')
    .set({ revoked_at: at })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Creates a key with a grant, stores only its hash, and returns the key once. */
export async function createApiKey(
  db: Db,
  deps: { label: string; grant: Grant; now: number; id: string },
): Promise<{ id: string; key: string }> {
  const key = newApiKeySecret();
  await insertGrantedKey(db, {
    id: deps.id,
    hash: hashApiKey(key),
    label: deps.label,
    createdAt: deps.now,
    grant: deps.grant,
  });
  return { id: deps.id, key };
}

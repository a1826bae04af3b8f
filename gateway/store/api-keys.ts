// Owns the api_keys table: stored key hashes and labels, never a key in clear.
import type { Db } from './db.ts';

export async function countApiKeys(db: Db): Promise<number> {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

export async function insertApiKey(
  db: Db,
  k: { id: string; hash: string; label: string; createdAt: number },
): Promise<void> {
  await db
    .insertInto('api_keys')
    .values({ id: k.id, hash: k.hash, label: k.label, created_at: k.createdAt })
    .execute();
}

export async function findApiKeyByHash(db: Db, hash: string): Promise<{ id: string; label: string } | null> {
  const row = await db
    .selectFrom('api_keys')
    .select(['id', 'label'])
    .where('hash', '=', hash)
    .executeTakeFirst();
  return row ?? null;
}

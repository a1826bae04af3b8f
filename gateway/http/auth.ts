// Owns API-key authentication: bearer keys are compared by SHA-256 hash, never stored or logged in clear.
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { ApiError } from '../errors.ts';
import { findApiKeyByHash } from '../store/records.ts';
import type { Database } from '../store/schema.ts';

export const hashApiKey = (key: string): string => createHash('sha256').update(key).digest('hex');

const BEARER = /^Bearer ([A-Za-z0-9_-]{16,128})$/;

/** Every route except those listed as public needs a valid key; anything else is 401, deny by default. */
export function registerAuth(
  app: FastifyInstance,
  db: Kysely<Database>,
  publicRoutes: ReadonlySet<string>,
): void {
  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.url !== undefined && publicRoutes.has(req.routeOptions.url)) return;
    const m = BEARER.exec(req.headers.authorization ?? '');
    if (!m) throw new ApiError('UNAUTHENTICATED');
    const key = await findApiKeyByHash(db, hashApiKey(m[1] as string));
    if (!key) throw new ApiError('UNAUTHENTICATED');
    req.apiKeyId = key.id;
  });
}

declare module 'fastify' {
  interface FastifyRequest {
    apiKeyId?: string;
  }
}

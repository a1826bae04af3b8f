// Owns API-key authentication: bearer keys are compared by SHA-256 hash, never stored or logged in clear.
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { ApiError } from '../errors.ts';
import type { Database } from '../store/schema.ts';
import { type Caller, findCallerByHash, hashApiKey } from './api-keys.ts';

export { hashApiKey };

const BEARER = /^Bearer ([A-Za-z0-9_-]{16,128})$/;

/** Routes under these prefixes are public as a whole (the OpenAPI page and its assets). */
const PUBLIC_PREFIXES = ['/docs'];

export const isPublicRoute = (url: string | undefined, publicRoutes: ReadonlySet<string>): boolean =>
  url !== undefined &&
  (publicRoutes.has(url) || PUBLIC_PREFIXES.some((p) => url === p || url.startsWith(`${p}/`)));

/** Every route except those listed as public needs a valid, unrevoked key; anything else is 401, deny by default. */
export function registerAuth(
  app: FastifyInstance,
  db: Kysely<Database>,
  publicRoutes: ReadonlySet<string>,
): void {
  app.addHook('onRequest', async (req) => {
    if (isPublicRoute(req.routeOptions.url, publicRoutes)) return;
    const m = BEARER.exec(req.headers.authorization ?? '');
    if (!m) throw new ApiError('UNAUTHENTICATED');
    const caller = await findCallerByHash(db, hashApiKey(m[1] as string));
    if (!caller) throw new ApiError('UNAUTHENTICATED');
    req.apiKeyId = caller.keyId;
    req.caller = caller;
  });
}

declare module 'fastify' {
  interface FastifyRequest {
    apiKeyId?: string;
    caller?: Caller;
  }
}

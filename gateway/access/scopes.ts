// Owns the scope check: each route names the scopes that may call it; a route that names none is admin-only.
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.ts';
import { hasScope, type Scope } from './api-keys.ts';

/**
 * Runs after authentication (hooks run in the order they were added). Deny by default: a key without one of
 * the route's scopes gets 403 SCOPE_MISSING before the body is even parsed.
 */
export function registerScopeCheck(app: FastifyInstance): void {
  app.addHook('onRequest', async (req) => {
    const caller = req.caller;
    if (!caller) return; // a public route: authentication let it through without a key
    if (req.routeOptions.url === undefined) return; // no such route: the not-found handler answers 404
    const wanted = req.routeOptions.config?.scopes ?? [];
    if (!hasScope(caller, wanted)) {
      throw new ApiError('SCOPE_MISSING', {
        detail:
          wanted.length === 0
            ? 'this route needs an admin key'
            : `this route needs one of the scopes: ${wanted.join(', ')}`,
        extra: { requiredScopes: wanted.length === 0 ? ['admin'] : wanted },
      });
    }
  });
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Any one of these scopes lets a key call the route; none listed means admin keys only. */
    scopes?: readonly Scope[];
  }
}

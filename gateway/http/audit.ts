// Owns the audit trail's HTTP side: the export routes (checkpoint, entries, proofs) and the record of key use.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AuditLog } from '../audit/log.ts';
import type { IdempotencyScope } from './idempotency-scope.ts';

const Size = z.coerce.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** Standard or URL-safe base64 of 32 bytes; a '+' may arrive as a space after query decoding. */
const LeafHash = z
  .string()
  .regex(/^[A-Za-z0-9+/_ -]{43}=?$/)
  .transform((s) => Buffer.from(s.replaceAll(' ', '+').replaceAll('-', '+').replaceAll('_', '/'), 'base64'));

export const AuditEntriesQuery = z.strictObject({ from: Size.default(0), to: Size.optional() });

export const AuditProofQuery = z
  .strictObject({
    index: Size.optional(),
    leafHash: LeafHash.optional(),
    treeSize: Size.optional(),
    from: Size.optional(),
    to: Size.optional(),
  })
  .refine(
    (q) => {
      const inclusion = (q.index !== undefined) !== (q.leafHash !== undefined);
      const consistency = q.from !== undefined;
      return inclusion
        ? !consistency && q.to === undefined
        : consistency && q.index === undefined && q.leafHash === undefined && q.treeSize === undefined;
    },
    { message: 'ask for index or leafHash [and treeSize] (inclusion), or from [and to] (consistency)' },
  );

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * `scope`: the request scope that carries the key's use into the request's first unit of work (one commit for
 * the use and the decision); without it the use is written alone before the handler runs.
 */
export function registerAuditApi(app: FastifyInstance, audit: AuditLog, scope?: IdempotencyScope): void {
  // Runs after the authentication hook, so only a known key gets here. The use commits with the request's first
  // effect, or alone before its reply (idempotency.ts); if it cannot be written the request fails (500) and
  // nothing it did commits: no unlogged key use.
  app.addHook('onRequest', async (req) => {
    const route = req.routeOptions.url;
    if (!MUTATING.has(req.method) || req.apiKeyId === undefined || route === undefined) return;
    const id = (req.params as { id?: unknown }).id;
    const use = {
      keyId: req.apiKeyId,
      scopes: req.caller?.scopes ?? [],
      ownerId: req.caller?.ownerId ?? null,
      carrierId: req.caller?.carrierId ?? null,
      method: req.method,
      route,
      requestId: req.id,
      deliveryId: route.startsWith('/v1/deliveries/:id') && typeof id === 'string' && ID.test(id) ? id : null,
    };
    if (scope) scope.deferKeyUse(audit.keyUseEntry(use));
    else await audit.recordKeyUse(use);
  });

  const r = app.withTypeProvider<ZodTypeProvider>();

  // C2SP checkpoints travel as text/plain notes; this signs one first if the log grew since the last.
  // Reviewers read the audit trail with a timelines:read key (gateway/access/scopes.ts).
  const reviewer = { scopes: ['timelines:read'] } as const;
  r.get('/v1/audit/checkpoint', { config: reviewer }, async (_req, reply) => {
    const cp = await audit.checkpoint();
    return reply.type('text/plain; charset=utf-8').send(cp.note);
  });

  r.get(
    '/v1/audit/entries',
    { config: reviewer, schema: { querystring: AuditEntriesQuery } },
    async (req) => {
      const { from, to } = req.query;
      const page = await audit.entries(from, to);
      return {
        origin: audit.origin,
        treeSize: page.treeSize,
        from,
        to: from + page.entries.length,
        entries: page.entries,
      };
    },
  );

  r.get('/v1/audit/proof', { config: reviewer, schema: { querystring: AuditProofQuery } }, async (req) => {
    const q = req.query;
    if (q.from !== undefined) return { type: 'consistency', ...(await audit.consistency(q.from, q.to)) };
    return {
      type: 'inclusion',
      ...(await audit.inclusion({
        ...(q.index === undefined ? {} : { index: q.index }),
        ...(q.leafHash === undefined ? {} : { leafHash: q.leafHash }),
        ...(q.treeSize === undefined ? {} : { treeSize: q.treeSize }),
      })),
    };
  });
}

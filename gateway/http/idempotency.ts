// Owns the Idempotency-Key header on every POST: claim before validation, store the reply, replay duplicates.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { ApiError } from '../errors.ts';
import type { Write } from '../store/group-commit.ts';
import type { Database } from '../store/schema.ts';
import type { SecretBox } from '../webhooks/secret-box.ts';
import {
  claimIdempotencyKey,
  completeIdempotencyKey,
  fingerprintOf,
  type IdempotencyPolicy,
  purgeIdempotencyKeys,
  releaseIdempotencyKey,
} from './idempotency-records.ts';
import {
  createIdempotencyScope,
  type HeldKey,
  type IdempotencyScope,
  type RequestScope,
} from './idempotency-scope.ts';

export const IDEMPOTENCY_HEADER = 'idempotency-key';
export const REPLAYED_HEADER = 'idempotent-replayed';

/** The draft makes the value an RFC 8941 sf-string; a bare token is accepted too. Visible ASCII, 1-255. */
export function parseIdempotencyKey(raw: string): string | null {
  const quoted = /^"(.*)"$/.exec(raw);
  const value = quoted ? (quoted[1] as string) : raw;
  return /^[\x21-\x7e]{1,255}$/.test(value) && !/["\\]/.test(value) ? value : null;
}

const PURGE_EVERY_MS = 60_000;

/** A problem reply that says a retry may succeed must not be replayed: the key is freed for that retry. */
function isFinal(status: number, payload: string): boolean {
  if (status >= 500) return false;
  if (status < 400) return true;
  try {
    return (JSON.parse(payload) as { retryable?: unknown }).retryable !== true;
  } catch {
    return true;
  }
}

export function registerIdempotency(
  app: FastifyInstance,
  deps: {
    db: Kysely<Database>;
    now: () => number;
    policy: IdempotencyPolicy;
    box: SecretBox;
    /** The scope the services' writes were wrapped in (gateway.ts); a fresh one when none is given. */
    scope?: IdempotencyScope;
    /**
     * Writes a request's key use alone when none of its units carried it (idempotency-scope.ts), before its reply
     * is stored or sent: the store's own write, so that it never marks an Idempotency-Key.
     */
    keyUseWrite?: Write;
  },
): void {
  const { db, now, policy, box } = deps;
  const scope = deps.scope ?? createIdempotencyScope();
  // Every request runs in a scope that can hold a key, so the writes of its effect can mark it.
  // The scope is also kept on the request: onResponse runs outside the request's async context.
  app.addHook('onRequest', (req, _reply, done) =>
    scope.enter((entered) => {
      req.requestScope = entered;
      done();
    }),
  );
  // Bound to the API key and the Idempotency-Key, so a sealed response cannot be replayed to anyone else.
  const aad = (held: { apiKeyId: string; key: string }): string => `idempotency:${held.apiKeyId}:${held.key}`;
  let lastPurge = 0;

  // preValidation: the body is parsed JSON but not yet through the schema, so it is the body as sent.
  app.addHook('preValidation', async (req: FastifyRequest, reply: FastifyReply) => {
    const raw = req.headers[IDEMPOTENCY_HEADER];
    if (req.method !== 'POST' || raw === undefined || !req.caller) return;
    const key = typeof raw === 'string' ? parseIdempotencyKey(raw) : null;
    if (key === null) throw new ApiError('IDEMPOTENCY_KEY_INVALID');
    const t = now();
    if (t - lastPurge >= PURGE_EVERY_MS) {
      lastPurge = t;
      await purgeIdempotencyKeys(db, t);
    }
    const apiKeyId = req.caller.keyId;
    const claim = await claimIdempotencyKey(
      db,
      { apiKeyId, key, fingerprint: fingerprintOf(req.method, req.url, req.body), now: t },
      policy,
    );
    if (claim.kind === 'reused') throw new ApiError('IDEMPOTENCY_KEY_REUSED');
    if (claim.kind === 'in_flight') throw new ApiError('IDEMPOTENCY_IN_FLIGHT', { mayHaveSucceeded: true });
    if (claim.kind === 'response_lost')
      throw new ApiError('IDEMPOTENCY_RESPONSE_LOST', { mayHaveSucceeded: true });
    if (claim.kind === 'replay') {
      req.idempotencyReplayed = true;
      return reply
        .code(claim.status)
        .header('content-type', claim.contentType)
        .header(REPLAYED_HEADER, 'true')
        .send(claim.sealed ? box.open(aad({ apiKeyId, key }), claim.body) : claim.body);
    }
    const held: HeldKey = { apiKeyId, key, settled: false, marked: false };
    req.idempotency = held;
    scope.hold(held);
  });

  app.addHook('onSend', async (req, reply, payload) => {
    // A key use that cannot be written fails the reply (500), before any response is stored for replay.
    if (deps.keyUseWrite) await scope.flushKeyUse(deps.keyUseWrite, req.requestScope);
    const held = req.idempotency;
    if (!held || held.settled) return payload;
    held.settled = true;
    const body =
      typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : null;
    if (body !== null && isFinal(reply.statusCode, body)) {
      const seal = req.routeOptions.config?.sealReplies === true;
      await completeIdempotencyKey(db, {
        apiKeyId: held.apiKeyId,
        key: held.key,
        status: reply.statusCode,
        contentType: String(reply.getHeader('content-type') ?? 'application/json'),
        body: seal ? box.seal(aad(held), body) : body,
        sealed: seal,
      });
    } else {
      await releaseIdempotencyKey(db, held.apiKeyId, held.key);
    }
    return payload;
  });

  // A reply that never went through onSend (an aborted request) must not hold its key until the lease ends.
  app.addHook('onResponse', async (req) => {
    if (deps.keyUseWrite) {
      await scope
        .flushKeyUse(deps.keyUseWrite, req.requestScope)
        .catch((err: unknown) => req.log.error({ err, event: 'audit.key_use_failed' }, 'key use not logged'));
    }
    const held = req.idempotency;
    if (!held || held.settled) return;
    held.settled = true;
    await releaseIdempotencyKey(db, held.apiKeyId, held.key);
  });
}

declare module 'fastify' {
  interface FastifyRequest {
    idempotency?: HeldKey;
    requestScope?: RequestScope;
    idempotencyReplayed?: boolean;
  }
  interface FastifyContextConfig {
    /** The reply holds a secret shown once: its stored copy for replays is sealed, never kept in clear. */
    sealReplies?: boolean;
  }
}

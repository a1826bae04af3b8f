// Owns the error reply: every failure is application/problem+json (RFC 9457) with a stable code and a request id.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, ERRORS, type ErrorCode } from '../errors.ts';

export const PROBLEM_TYPE_BASE = 'urn:curbside:error:';

/**
 * Commands to a car (route config `command: true`) always say whether the car may have acted: a refusal before
 * anything was sent did not, an unexpected failure might have (Tesla vehicle-command's MayHaveSucceeded).
 */
function mayHaveSucceeded(req: FastifyRequest, err: ApiError): { mayHaveSucceeded?: boolean } {
  if (err.mayHaveSucceeded !== undefined) return { mayHaveSucceeded: err.mayHaveSucceeded };
  if (req.routeOptions.config?.command !== true) return {};
  return { mayHaveSucceeded: err.code === 'INTERNAL' };
}

function send(
  reply: FastifyReply,
  req: FastifyRequest,
  err: ApiError,
  extra: Record<string, unknown> = {},
): FastifyReply {
  if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS));
  return reply
    .code(err.status)
    .type('application/problem+json')
    .send({
      type: `${PROBLEM_TYPE_BASE}${err.code}`,
      title: ERRORS[err.code].title,
      status: err.status,
      code: err.code,
      detail: err.message,
      retryable: err.retryable,
      resolution: err.resolution,
      ...mayHaveSucceeded(req, err),
      requestId: req.id,
      ...err.extra,
      ...extra,
    });
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
};

export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, req, reply) => {
    if (error instanceof ApiError) return send(reply, req, error);
    if (error.validation) {
      const issues = error.validation.map((v) => ({ path: v.instancePath, message: v.message }));
      return send(reply, req, new ApiError('VALIDATION_FAILED', { detail: error.message }), { issues });
    }
    const mapped = error.code ? FASTIFY_CODES[error.code] : undefined;
    if (mapped) return send(reply, req, new ApiError(mapped, { detail: error.message }));
    if (error.statusCode === 400)
      return send(reply, req, new ApiError('VALIDATION_FAILED', { detail: error.message }));
    req.log.error({ err: error }, 'unhandled error');
    return send(reply, req, new ApiError('INTERNAL', { detail: 'internal error' }));
  });
  app.setNotFoundHandler((req, reply) => send(reply, req, new ApiError('ROUTE_NOT_FOUND')));
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route sends a command to a car: its errors always carry mayHaveSucceeded. */
    command?: boolean;
  }
}

// Owns the OpenAPI 3.1 document, generated from the routes' zod schemas, at /openapi.json and /docs.
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isPublicRoute } from '../access/auth.ts';
import { ERRORS } from '../errors.ts';
import { EVENT_SUMMARIES, EVENT_TYPES, payloadSchemaOf } from '../webhooks/events.ts';
import { EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER } from '../webhooks/signature.ts';
import { IDEMPOTENCY_HEADER } from './idempotency.ts';
import { Problem } from './schemas.ts';

export const OPENAPI_PATH = '/openapi.json';
export const DOCS_PATH = '/docs';
export const BEARER_SCHEME = 'bearerAuth';

const problemJsonSchema = z.toJSONSchema(Problem, { target: 'draft-2020-12', io: 'output' });
const errorResponse = {
  description: `A problem document (RFC 9457); \`code\` is one of ${Object.keys(ERRORS).join(', ')}`,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
};

const idempotencyKeyHeader = {
  type: 'string',
  minLength: 1,
  maxLength: 255,
  description:
    'IETF httpapi Idempotency-Key: the same key and body replay the first response for 24 h (per API key); ' +
    'another body → 422, while the first runs → 409',
};

/**
 * OpenAPI 3.1 `webhooks`: one POST per event type in EVENT_TYPES, its body the payload schema the outbox writes,
 * with the headers a receiver checks. Generated from the list, so a new event type appears by itself.
 */
export function webhookDocs(): Record<string, unknown> {
  return Object.fromEntries(
    EVENT_TYPES.map((type) => {
      const { $schema: _, ...schema } = z.toJSONSchema(payloadSchemaOf(type), {
        target: 'draft-2020-12',
        io: 'output',
      });
      const header = (name: string, description: string, value?: string) => ({
        in: 'header',
        name,
        required: true,
        description,
        schema: value === undefined ? { type: 'string' } : { type: 'string', const: value },
      });
      return [
        type,
        {
          post: {
            operationId: `webhook.${type}`,
            summary: EVENT_SUMMARIES[type] ?? type,
            description:
              "POSTed to every live webhook of the car's owner, and of the delivery's carrier, that lists this event; " +
              'at least once, retried with backoff until a 2xx. Verify the signature over the raw body ' +
              '(gateway/webhooks/verify.ts), then de-duplicate on the event id.',
            security: [],
            parameters: [
              header(
                SIGNATURE_HEADER,
                't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>; refuse a t older than 5 minutes',
              ),
              header(EVENT_ID_HEADER, "The payload's id: the same on every retry"),
              header(EVENT_TYPE_HEADER, "The payload's type", type),
            ],
            requestBody: { required: true, content: { 'application/json': { schema } } },
            responses: {
              '2XX': {
                description:
                  'Delivered. Any other answer, a redirect included (never followed), or none in 5 s fails the attempt',
              },
            },
          },
        },
      ];
    }),
  );
}

type Transform = typeof jsonSchemaTransform;

/**
 * Adds what every operation shares to the zod-derived schemas: the problem document for 4XX/5XX, the
 * scopes the route needs, and no security on public routes.
 */
function transformFor(publicRoutes: ReadonlySet<string>): Transform {
  return (input) => {
    const out = jsonSchemaTransform(input);
    const schema = (out.schema ?? {}) as Record<string, unknown>;
    if (schema.hide) return out;
    const response = { ...((schema.response as Record<string, unknown> | undefined) ?? {}) };
    response['4XX'] = errorResponse;
    response['5XX'] = errorResponse;
    schema.response = response;
    if (isPublicRoute(input.url, publicRoutes)) schema.security = [];
    const methods = [input.route.method].flat();
    if (methods.includes('POST')) {
      const headers = (schema.headers as { properties?: Record<string, unknown> } | undefined) ?? {};
      schema.headers = {
        type: 'object',
        ...headers,
        properties: { ...headers.properties, [IDEMPOTENCY_HEADER]: idempotencyKeyHeader },
      };
    }
    const scopes = input.route.config?.scopes;
    if (scopes && !isPublicRoute(input.url, publicRoutes)) {
      schema.description = `${schema.description ? `${String(schema.description)}\n\n` : ''}Scopes (any one): ${
        scopes.length ? [...scopes, 'admin'].join(', ') : 'admin'
      }.`;
    }
    return { schema: schema as never, url: out.url };
  };
}

/** Registers the generator before any route (it collects routes as they are added) and serves both pages. */
export async function registerOpenApi(
  app: FastifyInstance,
  publicRoutes: ReadonlySet<string>,
): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Curbside Key gateway',
        version: '1',
        description:
          'In-car delivery: link vehicles, schedule deliveries, unlock and lock for the assigned driver, ' +
          'signed webhooks. Every POST accepts Idempotency-Key. Errors are application/problem+json.',
      },
      components: {
        securitySchemes: {
          [BEARER_SCHEME]: {
            type: 'http',
            scheme: 'bearer',
            description: 'An API key (ck_…); its scopes and owner or carrier binding decide what it may do',
          },
        },
        schemas: { Problem: problemJsonSchema as Record<string, unknown> },
      },
      security: [{ [BEARER_SCHEME]: [] }],
      // Plain objects built above; @fastify/swagger copies them as they are (test/errors-openapi.test.ts checks them).
      webhooks: webhookDocs() as never,
    },
    transform: transformFor(publicRoutes),
  });
  await app.register(fastifySwaggerUi, { routePrefix: DOCS_PATH });
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger());
}

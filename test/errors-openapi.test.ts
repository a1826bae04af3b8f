// The error registry's promises (code, status, retryable, resolution) and the generated OpenAPI document.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, ERRORS, RESOLUTIONS } from '../gateway/errors.ts';
import { EVENT_TYPES } from '../gateway/webhooks/events.ts';
import { type Call, callWithKey, unlockBody, vehicleOf } from './helpers/platform.ts';
import { type Stack, startStack } from './helpers/stack.ts';

let stack: Stack;
let admin: Call;

beforeAll(async () => {
  stack = await startStack();
  admin = callWithKey(stack, stack.apiKey);
});

afterAll(async () => {
  await stack?.close();
});

describe('the error registry', () => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    it(`${code}: a status, a title, retryable and a resolution that agree`, () => {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
      expect(spec.status).toBeGreaterThanOrEqual(400);
      expect(spec.status).toBeLessThan(600);
      expect(spec.title.length).toBeGreaterThan(0);
      expect(typeof spec.retryable).toBe('boolean');
      expect(RESOLUTIONS).toContain(spec.resolution);
      // A retry-safe error says "retry later"; one that is not never does.
      expect(spec.resolution === 'RETRY_LATER').toBe(spec.retryable);
      if (spec.status === 401) expect(spec.resolution).toBe('REAUTHENTICATE');
      const err = new ApiError(code as keyof typeof ERRORS);
      expect([err.code, err.status, err.retryable, err.resolution]).toEqual([
        code,
        spec.status,
        spec.retryable,
        spec.resolution,
      ]);
    });
  }

  it('puts code, status, retryable, resolution and requestId in every problem document', async () => {
    const replies = [
      await stack.gateway.app.inject({ method: 'GET', url: '/v1/vehicles' }),
      await stack.gateway.app.inject({
        method: 'POST',
        url: '/v1/vehicles',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'text/plain' },
        payload: 'x',
      }),
    ];
    for (const res of replies) {
      const body = JSON.parse(res.body);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(body).toMatchObject({ status: res.statusCode, code: expect.any(String), retryable: false });
      expect(RESOLUTIONS).toContain(body.resolution);
      expect(body.requestId).toBe(res.headers['x-request-id']);
      expect(body.mayHaveSucceeded).toBeUndefined();
    }
  });

  it('says on every command refusal whether the car may have acted', async () => {
    const v = vehicleOf(stack, 'owner-ada');
    const notFound = await admin('POST', '/v1/deliveries/dlv_nope/unlock', unlockBody(v));
    expect(notFound.body).toMatchObject({ code: 'NOT_FOUND', mayHaveSucceeded: false });
    const invalid = await admin('POST', '/v1/deliveries/dlv_nope/lock', { driverId: 'd', ttl: 5 });
    expect(invalid.body).toMatchObject({ code: 'VALIDATION_FAILED', mayHaveSucceeded: false });
    const read = await admin('GET', '/v1/deliveries/dlv_nope');
    expect(read.body.mayHaveSucceeded).toBeUndefined();
  });
});

/** Every route the app has, as "METHOD /path" (from Fastify's own route tree, not from the document). */
function routesOf(tree: string): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│├└─\s]*)(\S.*?) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) continue;
    const depth = Math.floor((m[1] as string).length / 4);
    stack.length = depth;
    stack.push(m[2] as string);
    for (const method of (m[3] as string).split(', ')) out.push(`${method} ${stack.join('')}`);
  }
  return out;
}

describe('OpenAPI', () => {
  // biome-ignore lint/suspicious/noExplicitAny: the document is checked by shape.
  let doc: any;

  beforeAll(async () => {
    const res = await stack.gateway.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    doc = JSON.parse(res.body);
  });

  it('is a public OpenAPI 3 document', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    expect(typeof doc.paths).toBe('object');
  });

  it('documents every /v1 route with its method', () => {
    const routes = routesOf(stack.gateway.app.printRoutes({ commonPrefix: false })).filter(
      (r) => r.includes(' /v1/') && !r.startsWith('HEAD '),
    );
    expect(routes.length).toBeGreaterThanOrEqual(10);
    for (const route of routes) {
      const [method, path] = route.split(' ') as [string, string];
      const openapiPath = path.replace(/:(\w+)/g, '{$1}');
      expect(doc.paths[openapiPath]?.[method.toLowerCase()], route).toBeDefined();
    }
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/docs') || p === '/openapi.json')).toEqual([]);
  });

  it('takes request and response schemas from the zod schemas', () => {
    const create = doc.paths['/v1/deliveries'].post;
    const body = create.requestBody.content['application/json'].schema;
    expect(body.required).toEqual(
      expect.arrayContaining(['vin', 'locationId', 'driverId', 'packageIds', 'window']),
    );
    expect(body.additionalProperties).toBe(false);
    expect(create.responses['201'].content['application/json'].schema.properties.carrierId).toBeDefined();
    const unlock = doc.paths['/v1/deliveries/{id}/unlock'].post;
    expect(Object.keys(unlock.requestBody.content['application/json'].schema.properties).sort()).toEqual([
      'driverId',
      'packageId',
      'position',
    ]);
  });

  it('documents Idempotency-Key on every POST', () => {
    for (const [path, item] of Object.entries<
      Record<string, { parameters?: Array<{ in: string; name: string }> }>
    >(doc.paths)) {
      if (!item.post) continue;
      expect(
        item.post.parameters?.some((p) => p.in === 'header' && p.name === 'idempotency-key'),
        path,
      ).toBe(true);
    }
  });

  it('answers errors with the problem schema', () => {
    const problem = doc.components.schemas.Problem;
    expect(problem.required).toEqual(
      expect.arrayContaining(['type', 'title', 'status', 'code', 'retryable', 'resolution', 'requestId']),
    );
    expect(problem.properties.resolution.enum).toEqual([...RESOLUTIONS]);
    for (const [path, item] of Object.entries<Record<string, { responses: Record<string, unknown> }>>(
      doc.paths,
    )) {
      for (const [method, op] of Object.entries(item)) {
        for (const status of ['4XX', '5XX']) {
          expect(op.responses[status], `${method} ${path} ${status}`).toMatchObject({
            content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
          });
        }
      }
    }
  });

  it('declares the bearer scheme on /v1 and none on public routes', () => {
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
    expect(doc.paths['/healthz'].get.security).toEqual([]);
    expect(doc.paths['/v1/deliveries'].post.security).toBeUndefined();
    expect(doc.paths['/v1/deliveries/{id}/unlock'].post.description).toContain('commands');
  });

  it('lists every webhook event type in events.ts, with its payload schema (OpenAPI 3.1 webhooks)', () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(Object.keys(doc.webhooks ?? {}).sort()).toEqual([...EVENT_TYPES].sort());
    for (const type of EVENT_TYPES) {
      const op = doc.webhooks[type].post;
      const schema = op.requestBody.content['application/json'].schema;
      expect(schema.type, type).toBe('object');
      expect(schema.required, type).toEqual(
        expect.arrayContaining(['id', 'type', 'createdAt', 'deliveryId', 'vin', 'ownerId', 'data']),
      );
      expect(schema.properties.type.const, type).toBe(type);
      expect(schema.properties.data.type, type).toBe('object');
      expect(op.summary, type).toEqual(expect.any(String));
      expect(
        op.parameters.map((p: { in: string; name: string }) => `${p.in} ${p.name}`).sort(),
        type,
      ).toEqual(['header curbside-event-id', 'header curbside-event-type', 'header curbside-signature']);
      expect(Object.keys(op.responses), type).toEqual(['2XX']);
    }
  });

  it('serves the browsable page at /docs without a key', async () => {
    const page = await stack.gateway.app.inject({ method: 'GET', url: '/docs' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    const init = await stack.gateway.app.inject({
      method: 'GET',
      url: '/docs/static/swagger-initializer.js',
    });
    expect(init.statusCode).toBe(200);
    // Public means these two pages only: the API behind them still needs a key.
    expect((await stack.gateway.app.inject({ method: 'GET', url: '/v1/vehicles' })).statusCode).toBe(401);
  });
});

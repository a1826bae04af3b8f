// Owns the operator's side of the HTTP API: /readyz, /metrics, HTTP metrics, and refusing requests while draining.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ApiError } from '../errors.ts';
import type { GatewayMetrics } from '../platform/metrics.ts';
import type { ReadinessReport } from '../platform/readiness.ts';
import { registerProblemHandlers } from './problem.ts';

export interface OperationsDeps {
  metrics: GatewayMetrics;
  /** False when /metrics has a listener of its own (METRICS_PORT). */
  serveMetrics: boolean;
  /** With serveMetrics false: where /metrics is served (null until its listener is up), for the 404's hint. */
  metricsUrl?: () => string | null;
  readiness: () => Promise<ReadinessReport>;
  draining: () => boolean;
}

/** Answered even while draining: probes and scrapes must see the shutdown, not a refusal. */
const PROBES = new Set(['/healthz', '/readyz', '/metrics']);

/** The route template, so that ids in paths do not become label values. */
const routeOf = (req: FastifyRequest): string => req.routeOptions.url ?? 'unmatched';

async function sendMetrics(metrics: GatewayMetrics, reply: FastifyReply): Promise<FastifyReply> {
  return reply.type(metrics.contentType).send(await metrics.render());
}

/** Hooks at the root of the app (not an encapsulated plugin), registered before authentication. */
export function registerOperations(app: FastifyInstance, deps: OperationsDeps): void {
  app.addHook('onRequest', async (req) => {
    if (deps.draining() && !PROBES.has(req.routeOptions.url ?? '')) throw new ApiError('SHUTTING_DOWN');
  });
  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.httpRequest({
      method: req.method,
      route: routeOf(req),
      status: reply.statusCode,
      seconds: reply.elapsedTime / 1000,
    });
  });

  app.get('/readyz', async () => {
    const report = await deps.readiness();
    if (report.ready) return { status: 'ready', checks: report.checks };
    throw new ApiError('NOT_READY', {
      detail: `not ready: ${report.missing.map((m) => `${m} (${report.checks[m]})`).join(', ')}`,
      extra: { missing: report.missing, checks: report.checks },
    });
  });
  if (deps.serveMetrics) {
    app.get('/metrics', (_req, reply) => sendMetrics(deps.metrics, reply));
  } else {
    // A public route (no API key), so that a scraper pointed at the wrong port is told where to go, not 401.
    app.get('/metrics', { schema: { hide: true } }, async () => {
      const where = deps.metricsUrl?.() ?? 'METRICS_HOST:METRICS_PORT';
      throw new ApiError('ROUTE_NOT_FOUND', {
        detail: `/metrics is served on the metrics port (METRICS_PORT), not on the HTTP API: ${where}`,
      });
    });
  }
}

/** The separate metrics listener (METRICS_HOST:METRICS_PORT): /metrics and nothing else, no API key. */
export async function buildMetricsApp(metrics: GatewayMetrics): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  registerProblemHandlers(app);
  app.get('/metrics', (_req, reply) => sendMetrics(metrics, reply));
  await app.ready();
  return app;
}

/** http://host:port + path of an app once it listens, else null. */
export function listeningAt(app: FastifyInstance | null, path: string): string | null {
  const address = app?.server.address();
  if (!address || typeof address === 'string') return null;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}${path}`;
}

// Owns the gateway's Prometheus metrics: one prom-client Registry per gateway (never the global one).
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { CommandSettlement, DeliveryObserver } from '../deliveries/context.ts';
import type { QueryObservation } from '../store/store.ts';

export interface GatewayMetrics extends DeliveryObserver {
  registry: Registry;
  /** The exposition format's content type, for the /metrics reply. */
  contentType: string;
  render(): Promise<string>;
  /** Where curbside_cars_connected is read from at scrape time (broker or vehicle state). */
  countCarsWith(source: () => number | Promise<number>): void;
  httpRequest(r: { method: string; route: string; status: number; seconds: number }): void;
  storeQuery(query: QueryObservation): void;
  /** For the relock watchdog: one car it locked, confirmed by the car, because no lock came in time. */
  watchdogRelocked(): void;
  /** For the MQTT link: a session dropped because a granted subscription delivered no probe. */
  deafSubscription(): void;
  /** Where curbside_webhook_outbox_depth is read from at scrape time (the store's pending outbox rows). */
  countOutboxWith(source: () => number | Promise<number>): void;
  /** For the webhook dispatcher: one attempt failed. */
  webhookFailed(): void;
}

export const METRIC_NAMES = {
  carsConnected: 'curbside_cars_connected',
  commands: 'curbside_commands_total',
  refusals: 'curbside_refusals_total',
  unlockRoundTrip: 'curbside_unlock_round_trip_seconds',
  ackTimeouts: 'curbside_ack_timeouts_total',
  watchdogRelocks: 'curbside_watchdog_relocks_total',
  deafSubscriptions: 'curbside_mqtt_deaf_subscriptions_total',
  webhookOutboxDepth: 'curbside_webhook_outbox_depth',
  webhookFailures: 'curbside_webhook_failures_total',
  httpRequests: 'curbside_http_requests_total',
  httpDuration: 'curbside_http_request_duration_seconds',
  storeDuration: 'curbside_store_query_duration_seconds',
  storeErrors: 'curbside_store_query_errors_total',
} as const;

export function createMetrics(options: { processMetrics?: boolean } = {}): GatewayMetrics {
  const registry = new Registry();
  const registers = [registry];
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  let carsSource: () => number | Promise<number> = () => 0;
  new Gauge({
    name: METRIC_NAMES.carsConnected,
    help: 'Vehicles with an MQTT session now',
    registers,
    async collect() {
      this.set(await carsSource());
    },
  });
  const commands = new Counter({
    name: METRIC_NAMES.commands,
    help: 'Commands by action and outcome (executed, refused by the car, timeout, not_sent: broker down)',
    labelNames: ['action', 'outcome'] as const,
    registers,
  });
  const refusals = new Counter({
    name: METRIC_NAMES.refusals,
    help: 'Refusals by code; source gateway: a driver check, vehicle: the reason the car gave',
    labelNames: ['source', 'code'] as const,
    registers,
  });
  const unlockRoundTrip = new Histogram({
    name: METRIC_NAMES.unlockRoundTrip,
    help: 'Unlock command publish to car ack',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers,
  });
  const ackTimeouts = new Counter({
    name: METRIC_NAMES.ackTimeouts,
    help: 'Commands with no ack within COMMAND_TIMEOUT_MS',
    labelNames: ['action'] as const,
    registers,
  });
  const watchdogRelocks = new Counter({
    name: METRIC_NAMES.watchdogRelocks,
    help: 'Cars the watchdog locked (confirmed by the car) because no lock came in time',
    registers,
  });
  const deafSubscriptions = new Counter({
    name: METRIC_NAMES.deafSubscriptions,
    help: 'MQTT sessions dropped because a granted subscription delivered no probe within MQTT_PROBE_TIMEOUT_MS',
    registers,
  });
  let outboxSource: () => number | Promise<number> = () => 0;
  new Gauge({
    name: METRIC_NAMES.webhookOutboxDepth,
    help: 'Webhook deliveries waiting to be sent (pending outbox rows, shared by every replica of the store)',
    registers,
    async collect() {
      this.set(await outboxSource());
    },
  });
  const webhookFailures = new Counter({
    name: METRIC_NAMES.webhookFailures,
    help: 'Webhook attempts that failed',
    registers,
  });
  const httpRequests = new Counter({
    name: METRIC_NAMES.httpRequests,
    help: 'HTTP requests by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });
  const httpDuration = new Histogram({
    name: METRIC_NAMES.httpDuration,
    help: 'HTTP request duration by method and route template',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const storeDuration = new Histogram({
    name: METRIC_NAMES.storeDuration,
    help: 'Store query duration by statement kind',
    labelNames: ['operation'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers,
  });
  const storeErrors = new Counter({
    name: METRIC_NAMES.storeErrors,
    help: 'Store queries that failed, by statement kind',
    labelNames: ['operation'] as const,
    registers,
  });

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    countCarsWith(source) {
      carsSource = source;
    },
    countOutboxWith(source) {
      outboxSource = source;
    },
    denied(code) {
      refusals.inc({ source: 'gateway', code });
    },
    commandSettled(s: CommandSettlement) {
      commands.inc({ action: s.action, outcome: s.outcome });
      if (s.outcome === 'refused') refusals.inc({ source: 'vehicle', code: s.reason ?? 'UNSPECIFIED' });
      if (s.outcome === 'timeout') ackTimeouts.inc({ action: s.action });
      if (s.action === 'unlock' && s.roundTripMs !== null) unlockRoundTrip.observe(s.roundTripMs / 1000);
    },
    httpRequest(r) {
      httpRequests.inc({ method: r.method, route: r.route, status: String(r.status) });
      httpDuration.observe({ method: r.method, route: r.route }, r.seconds);
    },
    storeQuery(q) {
      storeDuration.observe({ operation: q.kind }, q.durationMs / 1000);
      if (q.failed) storeErrors.inc({ operation: q.kind });
    },
    watchdogRelocked: () => watchdogRelocks.inc(),
    deafSubscription: () => deafSubscriptions.inc(),
    webhookFailed: () => webhookFailures.inc(),
  };
}

import './runtime.ts';
import { defineConfig } from 'vitest/config';

/**
 * The tests that touch the store through the run's dialect (testDialect() in test/helpers/temp-store.ts: startStack,
 * startLoopback, useTempStore, scratchStore). Each runs twice, in the projects `sqlite` and `postgres`, every store
 * in its own SQLite file or PostgreSQL schema. test/dialect-matrix.test.ts fails when a test that touches the store
 * is in neither this list nor ONCE_WITH_STORE.
 */
export const STORE_TESTS = [
  'test/access.e2e.test.ts',
  'test/audit-cli.test.ts',
  'test/audit-crash.test.ts',
  'test/audit-verify.test.ts',
  'test/audit.e2e.test.ts',
  'test/broker-revocation.test.ts',
  'test/broker.e2e.test.ts',
  'test/chaos.e2e.test.ts',
  'test/console.e2e.test.ts',
  'test/console.test.ts',
  'test/crash.e2e.test.ts',
  'test/delivery-service.e2e.test.ts',
  'test/demo.test.ts',
  'test/dev-key.test.ts',
  'test/dialects.e2e.test.ts',
  'test/errors-openapi.test.ts',
  'test/expiry.e2e.test.ts',
  'test/gateway-faults.e2e.test.ts',
  'test/hostile-input.test.ts',
  'test/idempotency.test.ts',
  'test/key-rotation.test.ts',
  'test/keys-cli.test.ts',
  'test/lifecycle.test.ts',
  'test/logs.test.ts',
  'test/metrics.test.ts',
  'test/mosquitto.e2e.test.ts',
  'test/mqtt-security.test.ts',
  'test/production.test.ts',
  'test/readiness.test.ts',
  'test/reconcile.test.ts',
  'test/relock.e2e.test.ts',
  'test/start.test.ts',
  'test/vehicle-revocation.e2e.test.ts',
  'test/watchdog.test.ts',
  'test/webhooks-restart.test.ts',
  'test/webhooks.e2e.test.ts',
];

/**
 * Tests that touch a store yet run once, in the project `once`, and why. A reason is one of: the test runs on
 * both dialects itself (DIALECTS), it is about one dialect, or it is about a program around the store.
 */
export const ONCE_WITH_STORE: Record<string, string> = {
  'test/broker-cluster.e2e.test.ts':
    'about the clustered broker (nats-server nodes, failover): a program around the store, on the default store',
  'test/cli.test.ts': 'its signal tests run on both dialects themselves (DIALECTS); the rest opens no store',
  'test/cluster-coordination.test.ts': "PostgreSQL's own: what replicas share through one database",
  'test/deaf-subscription.e2e.test.ts':
    "about the gateway's MQTT link (a subscription that delivers nothing): a program around the store, on the default store",
  'test/delivery.e2e.test.ts': 'runs on both dialects itself (DIALECTS)',
  'test/replicas.e2e.test.ts': "PostgreSQL's own: gateway replicas on one schema",
  'test/revocation.test.ts': 'runs on both dialects itself (DIALECTS)',
  'test/signed-acks.test.ts': 'runs on both dialects itself (DIALECTS)',
  'test/store-prepared.test.ts': 'runs on both dialects itself (DIALECTS)',
  'test/simulator-workers.e2e.test.ts': 'runs on both dialects itself (DIALECTS)',
  'test/store-writes.test.ts': 'runs on both dialects itself (DIALECTS)',
  'test/store-postgres.test.ts': "PostgreSQL's own: DATABASE_URL, npm run migrate and their refusals",
  'test/store-pg-introspection.test.ts': "PostgreSQL's own: what the Migrator learns of the store's schema",
  'test/write-path.test.ts':
    'each dialect by name: the SQLite tail and upgrade, appends from several PostgreSQL stores',
  'test/store-durability.test.ts': "SQLite's own: the write-ahead log's fdatasync before each answer",
  'test/vehicle-link.e2e.test.ts':
    "about the gateway's MQTT link handing cars' messages on (a link of its own): the stack's store is not read",
};

const shared = {
  // test/cluster/ runs on its own: npm run test:cluster (vitest.cluster.config.ts).
  exclude: ['test/bench/**', 'test/cluster/**', 'node_modules/**'],
  testTimeout: 30_000,
  hookTimeout: 60_000,
  pool: 'forks' as const,
  // Most files wait (on a car's fail-safe, a restart, a poll) more than they compute: one file per core. vitest's
  // default is one fewer than the cores, so one file at a time on two; three at a time made restarts on a loaded
  // machine slow enough to miss their waits.
  maxWorkers: 2,
  // Every file proves it dropped each PostgreSQL schema it made (test/helpers/pg-leaks.ts).
  setupFiles: ['test/helpers/pg-leaks.ts'],
};

export default defineConfig({
  test: {
    ...shared,
    projects: [
      {
        extends: true,
        test: {
          name: 'once',
          include: ['test/**/*.test.ts'],
          exclude: [...shared.exclude, ...STORE_TESTS],
          // Its dialect loops and PostgreSQL's own tests need the server as much as the postgres project does.
          globalSetup: ['test/helpers/pg-reachable.ts'],
        },
      },
      {
        extends: true,
        test: { name: 'sqlite', include: STORE_TESTS, env: { STORE_DIALECT: 'sqlite' } },
      },
      {
        extends: true,
        test: {
          name: 'postgres',
          include: STORE_TESTS,
          env: { STORE_DIALECT: 'postgres' },
          // Refuses to start, in one line, when TEST_DATABASE_URL does not answer: never a silent skip.
          globalSetup: ['test/helpers/pg-reachable.ts'],
        },
      },
    ],
  },
});

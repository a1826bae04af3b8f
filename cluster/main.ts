// Owns `npm run cluster`: a local cluster for a user to try (3 gateway replicas on PostgreSQL, a 3-node nats-server
// cluster or one Mosquitto, the simulated fleet, one HTTP entry point), where each part listens, and stopping it all
// on Ctrl-C.
import '../runtime.ts';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, watchStopSignals } from '../gateway/platform/program.ts';
import { redactUrl } from '../gateway/store/store.ts';
import { clusterMosquitto, clusterNats, startCluster } from './cluster.ts';

const USAGE = `Usage: npm run cluster [-- --replicas N] [--broker mosquitto|nats] [--port N] [--dir DIR]

Starts on loopback: N gateway replicas (3 by default) sharing one PostgreSQL database, the broker (a 3-node
nats-server cluster; or with --broker mosquitto one Mosquitto), the seeded simulated fleet, and one HTTP entry point
that spreads requests over the replicas and skips one that is down. Replicas and cars are given every broker node and
move to the next one when theirs goes away. Prints where each part listens. Ctrl-C stops everything.

  --replicas N   how many replicas, 1..9 (default 3)
  --broker NAME  nats (default: a 3-node nats-server cluster, MQTT + JetStream) | mosquitto (one node)
  --port N       the entry point's port (default: a free one)
  --dir DIR      working folder for the PKI, broker files and fleet state (default: a new temporary one,
                 removed at the end)

PostgreSQL: DATABASE_URL when set (used as it is), else postgres://postgres@127.0.0.1:5432/test in a fresh schema
that is dropped at the end.`;

let values: { replicas?: string; broker?: string; port?: string; dir?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      replicas: { type: 'string' },
      broker: { type: 'string' },
      port: { type: 'string' },
      dir: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (err) {
  console.error(`cluster: ${(err as Error).message}\n\n${USAGE}`);
  process.exit(EXIT_USAGE);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(EXIT_OK);
}
const replicas = Number(values.replicas ?? '3');
const port = Number(values.port ?? '0');
const broker = values.broker ?? 'nats';
if (
  !/^[1-9]$/.test(values.replicas ?? '3') ||
  !/^(0|[1-9][0-9]{0,4})$/.test(values.port ?? '0') ||
  port > 65_535
) {
  console.error(`cluster: --replicas must be 1..9 and --port 0..65535\n\n${USAGE}`);
  process.exit(EXIT_USAGE);
}
if (broker !== 'mosquitto' && broker !== 'nats') {
  console.error(`cluster: --broker ${broker} is not available here; allowed: nats | mosquitto`);
  process.exit(EXIT_USAGE);
}

const stopSignals = watchStopSignals();
const ownDir = values.dir === undefined;
const dir = values.dir ? resolve(values.dir) : mkdtempSync(join(tmpdir(), 'curbside-cluster-'));
const fallback = 'postgres://postgres@127.0.0.1:5432/test';
let schema: string | null = null;
let databaseUrl = process.env.DATABASE_URL ?? '';
const dropSchema = async (): Promise<void> => {
  if (!schema) return;
  const client = new pg.Client({ connectionString: fallback });
  await client.connect();
  await client.query(`drop schema if exists ${schema} cascade`);
  await client.end();
};

try {
  if (!databaseUrl) {
    schema = `cluster_${randomBytes(4).toString('hex')}`;
    const client = new pg.Client({ connectionString: fallback });
    await client.connect();
    await client.query(`create schema ${schema}`);
    await client.end();
    const url = new URL(fallback);
    url.searchParams.set('options', `-c search_path=${schema}`);
    databaseUrl = url.toString();
  }
  const cluster = await startCluster({
    dir,
    databaseUrl,
    replicas,
    balancerPort: port,
    broker: broker === 'nats' ? clusterNats : clusterMosquitto(process.env),
  });
  const nodes = cluster.broker.nodes ?? [];
  const brokerLines =
    nodes.length === 0
      ? [`broker       ${cluster.broker.kind} ${cluster.broker.urls.join(', ')}`]
      : [
          `broker       ${cluster.broker.kind}, a cluster of ${nodes.length} nodes (MQTT over TLS; JetStream keeps the sessions)`,
          ...nodes.map(
            (n) =>
              `broker ${n.name.padEnd(5)} ${n.url} (pid ${n.pid()}, routes on port ${n.ports.cluster}, NATS port ${n.ports.client} refuses every client)`,
          ),
        ];
  const lines = [
    `PostgreSQL   ${redactUrl(databaseUrl)}${schema ? ` (schema ${schema}, dropped at the end)` : ''}`,
    ...brokerLines,
    ...cluster.replicas.map(
      (r) => `replica ${r.name.padEnd(4)} ${r.url} (pid ${r.pid}, MQTT session gateway-${r.name})`,
    ),
    `fleet        ${cluster.fleet?.cars.size ?? 0} simulated cars on ${cluster.broker.urls.join(',')}`,
    ...(nodes.length > 1
      ? [
          '             (replicas and cars start on the first node and move to the next one when theirs stops)',
        ]
      : []),
    `entry point  ${cluster.balancer.url}  (round robin over the replicas)`,
    `API key      in ${join(cluster.pki.dir, 'api-key')}`,
    '',
    `try:  curl -H "authorization: Bearer $(cat ${join(cluster.pki.dir, 'api-key')})" ${cluster.balancer.url}/v1/vehicles`,
    'Ctrl-C stops everything.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await stopSignals.first;
  process.stdout.write('stopping…\n');
  await cluster.stop();
  await dropSchema();
  if (ownDir) rmSync(dir, { recursive: true, force: true });
  process.exit(EXIT_OK);
} catch (err) {
  console.error(`cluster: ${(err as Error).message}`);
  await dropSchema().catch(() => {});
  if (ownDir) rmSync(dir, { recursive: true, force: true });
  process.exit(EXIT_FAILED);
}

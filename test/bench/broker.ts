// Owns `npm run bench:broker`: what each connected car costs the clustered broker (nats-server with MQTT and
// JetStream) in memory and idle CPU, on one node and on a cluster, and what each state report costs a gateway with
// the embedded broker, read from /proc, for the capacity plan in README.
import '../../runtime.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { devPkiPaths, ensureDevPki } from '../../certs/dev-pki.ts';
import { issueFleet } from '../../certs/fleet.ts';
import { MAX_NATS_NODES } from '../../certs/nats.ts';
import { type BrokerCluster, startBrokerCluster } from '../../cluster/broker.ts';
import { freshPgSchema, pgUrlWithSchema, TEST_DATABASE_URL } from '../helpers/pg-schema.ts';
import type { FleetStartParams } from './fleet-child.ts';
import { benchVin } from './fleet-data.ts';
import type { GatewayStarted } from './gateway-child.ts';
import { type Child, forkChild } from './ipc.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const MAX_CARS = 100_000;
/** Cars report their state this often here; 30 s is the simulator's default, shortened for more reports per window. */
const REPORT_INTERVAL_MS = 10_000;
/** After a step's cars are connected, this long for the connect storm's work to finish before idle is measured. */
const SETTLE_MS = 10_000;
/** How long idle CPU is read over. */
const IDLE_MS = 30_000;
/** Cars connecting at once in all, split over the nodes: each QoS 1 subscription makes the cluster agree on a consumer. */
const CONNECTING = 24;

const USAGE = `Usage: npm run bench:broker -- [--cars N] [--nodes 1,3] [--gateway sqlite,postgres]

For each node count of --nodes (default 1,3; 1..${MAX_NATS_NODES}): starts nats-server (MQTT over mutual TLS and
JetStream, the configuration of npm run certs -- nats) with that many nodes on loopback, then connects the simulated
cars in two steps (N/2, then N; default N 1000), each step's cars spread evenly over the nodes. At 0 cars and after
each step it waits ${SETTLE_MS / 1000} s, then reads each nats-server process's RSS (VmRSS) and its CPU time over
${IDLE_MS / 1000} s while the cars only send their state reports (one per car every ${REPORT_INTERVAL_MS / 1000} s).
Prints per step: cars connected, connect time, RSS per node, KiB per connected car per node and summed, idle CPU.
With --gateway, then for each store: one gateway with the embedded broker (SQLite, or PostgreSQL in a fresh schema
of TEST_DATABASE_URL), N cars linked and connected, and the gateway's (and PostgreSQL backends') CPU per state report.`;

function refuse(reason: string): never {
  process.stderr.write(`bench:broker: ${reason}\n`);
  process.exit(2);
}

let values: { cars?: string; nodes?: string; gateway?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      cars: { type: 'string' },
      nodes: { type: 'string' },
      gateway: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (err) {
  refuse(`${(err as Error).message.split('\n')[0]}; see --help`);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const cars = Number(values.cars ?? 1000);
if (!Number.isInteger(cars) || cars < 2 || cars > MAX_CARS)
  refuse(`--cars must be a whole number from 2 to ${MAX_CARS}`);
const nodeCounts = (values.nodes ?? '1,3').split(',').map(Number);
if (nodeCounts.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_NATS_NODES))
  refuse(`--nodes takes a comma-separated list of node counts from 1 to ${MAX_NATS_NODES}`);
const stores = values.gateway === undefined ? [] : values.gateway.split(',');
if (stores.some((s) => s !== 'sqlite' && s !== 'postgres'))
  refuse('--gateway takes a comma-separated list of sqlite, postgres');

const TICKS_PER_S = 100;

/** utime + stime of a process in ms (stat(5) fields 14 and 15, in clock ticks). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
}

/** Resident memory in KiB (VmRSS of status(5)). */
function rssKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? Number.NaN);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const work = mkdtempSync(join(tmpdir(), 'curbside-bench-broker-'));
const pki = devPkiPaths(join(work, 'pki'));
const children: Child[] = [];

/** Connects count cars from VIN index first with a fleet process; resolves with those connected. */
async function connectFleet(
  brokerUrl: string,
  first: number,
  count: number,
  concurrency: number,
): Promise<number> {
  const child = await forkChild(join(HERE, 'fleet-child.ts'), {
    logFile: join(work, `fleet-${first}.log`),
  });
  children.push(child);
  const params: FleetStartParams = {
    brokerUrl,
    pkiDir: pki.dir,
    count,
    first,
    concurrency,
    workers: 1,
    persistence: 'memory',
    tickMs: 250,
    reportIntervalMs: REPORT_INTERVAL_MS,
  };
  return (await child.call<{ connected: number }>('start', params)).connected;
}

interface Step {
  cars: number;
  /** Why this step's cars did not all connect (the fleet refused to start), or null. */
  failed: string | null;
  connected: number;
  connectS: number;
  rssKiB: number[];
  cpuMsPerS: number[];
}

async function measureIdle(pids: number[]): Promise<{ rssKiB: number[]; cpuMsPerS: number[] }> {
  await sleep(SETTLE_MS);
  const before = pids.map(cpuMs);
  const started = performance.now();
  await sleep(IDLE_MS);
  const seconds = (performance.now() - started) / 1000;
  const cpu = pids.map((pid, i) => (cpuMs(pid) - (before[i] ?? 0)) / seconds);
  return { rssKiB: pids.map(rssKiB), cpuMsPerS: cpu };
}

async function brokerRun(nodes: number): Promise<Step[]> {
  const dir = join(work, `nats-${nodes}`);
  let broker: BrokerCluster | null = null;
  try {
    broker = await startBrokerCluster({ pki, dir, nodes, readyTimeoutMs: 120_000 });
    const urls = broker.urls;
    const pids = broker.nodes.map((n) => n.pid() as number);
    const steps: Step[] = [
      { cars: 0, failed: null, connected: 0, connectS: 0, ...(await measureIdle(pids)) },
    ];
    const half = Math.floor(cars / 2);
    let connected = 0;
    for (const [from, to] of [
      [0, half],
      [half, cars],
    ] as const) {
      process.stderr.write(`${nodes} node(s): connecting cars ${from}..${to - 1}…\n`);
      const started = performance.now();
      // Each node gets its share of the step's cars first; the other nodes are their failover.
      const shares = urls.map((_, i) => {
        const a = from + Math.floor(((to - from) * i) / urls.length);
        const b = from + Math.floor(((to - from) * (i + 1)) / urls.length);
        const rotated = [...urls.slice(i), ...urls.slice(0, i)].join(',');
        return connectFleet(rotated, a, b - a, Math.max(1, Math.floor(CONNECTING / urls.length)));
      });
      // A car whose subscription the cluster refuses makes its fleet's start fail: the step is reported as failed.
      const settled = await Promise.allSettled(shares);
      const refused = settled.find((r) => r.status === 'rejected');
      for (const r of settled) if (r.status === 'fulfilled') connected += r.value;
      const connectS = (performance.now() - started) / 1000;
      const failed = refused ? (String(refused.reason).split('\n')[0]?.slice(0, 160) ?? 'failed') : null;
      steps.push({ cars: to, failed, connected, connectS, ...(await measureIdle(pids)) });
      if (failed) break;
    }
    return steps;
  } finally {
    for (const child of children.splice(0)) await child.close();
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface GatewayRow {
  store: string;
  connected: number;
  gatewayMsPerS: number;
  backendMsPerS: number | null;
  reportsPerS: number;
}

async function gatewayRun(store: string): Promise<GatewayRow> {
  const schema = store === 'postgres' ? await freshPgSchema() : null;
  const appName = schema ? `curbside-bench-broker-${schema.schema}` : '';
  const pg = schema ? new (await import('pg')).default.Client({ connectionString: TEST_DATABASE_URL }) : null;
  const gateway = await forkChild(join(HERE, 'gateway-child.ts'), {
    logFile: join(work, `gateway-${store}.log`),
  });
  try {
    let databaseUrl: string | undefined;
    if (schema) {
      const url = new URL(pgUrlWithSchema(schema.schema));
      url.searchParams.set('application_name', appName);
      databaseUrl = url.toString();
      await pg?.connect();
    }
    const started = await gateway.call<GatewayStarted>('start', {
      pkiDir: pki.dir,
      dataDir: join(work, `gateway-${store}`),
      ...(databaseUrl ? { databaseUrl, pgPool: 4 } : {}),
      logLevel: 'warn',
    });
    await gateway.call('link', { vins: Array.from({ length: cars }, (_, i) => benchVin(i)) });
    // The gateway's pool keeps its connections, so its backends are the same processes over the window.
    const backends = async (): Promise<number> => {
      if (!pg) return 0;
      const { rows } = await pg.query<{ pid: number }>(
        'select pid from pg_stat_activity where application_name = $1',
        [appName],
      );
      return rows.reduce((sum, { pid }) => sum + cpuMs(pid), 0);
    };
    /** CPU ms per second of the gateway and its backends, read over IDLE_MS after SETTLE_MS. */
    const idle = async (): Promise<{ gateway: number; backend: number }> => {
      await sleep(SETTLE_MS);
      const before = { gateway: cpuMs(gateway.pid), backend: await backends() };
      const t = performance.now();
      await sleep(IDLE_MS);
      const seconds = (performance.now() - t) / 1000;
      return {
        gateway: (cpuMs(gateway.pid) - before.gateway) / seconds,
        backend: ((await backends()) - before.backend) / seconds,
      };
    };
    // Without cars the gateway still runs its background work (watchdog, outbox, reconciler): subtracted.
    const empty = await idle();
    process.stderr.write(`gateway on ${store}: connecting ${cars} cars…\n`);
    const connected = await connectFleet(started.brokerUrl, 0, cars, CONNECTING);
    const loaded = await idle();
    return {
      store,
      connected,
      gatewayMsPerS: loaded.gateway - empty.gateway,
      backendMsPerS: pg ? loaded.backend - empty.backend : null,
      reportsPerS: (connected * 1000) / REPORT_INTERVAL_MS,
    };
  } finally {
    for (const child of children.splice(0)) await child.close();
    await gateway.close();
    await pg?.end().catch(() => undefined);
    await schema?.drop();
  }
}

const f0 = (n: number): string => n.toFixed(0);
const f1 = (n: number): string => n.toFixed(1);

try {
  await ensureDevPki({ dir: pki.dir, vins: [] });
  process.stderr.write(`issuing ${cars} car identities…\n`);
  await issueFleet({ dir: pki.dir, count: cars, vinOf: benchVin });
  const print = (lines: string[]): void => {
    process.stdout.write(`${lines.join('\n')}\n`);
  };
  print([
    `cars: ${cars}, ${CONNECTING} connecting at once, state report every ${REPORT_INTERVAL_MS / 1000} s, idle CPU over ${IDLE_MS / 1000} s`,
  ]);
  for (const nodes of nodeCounts) {
    const lines: string[] = [];
    const steps = await brokerRun(nodes);
    const base = steps[0] as Step;
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    lines.push(
      '',
      `nats-server, ${nodes} node(s)`,
      '| cars | connected | connect s | RSS MiB per node | KiB per car per node | KiB per car, all nodes | idle CPU ms/s per node | idle CPU ms/s per 1,000 cars, all nodes |',
      '| ---- | --------- | --------- | ---------------- | -------------------- | ---------------------- | ---------------------- | --------------------------------------- |',
      ...steps.map((s) => {
        const perCar = s.rssKiB.map((r, i) => (r - (base.rssKiB[i] ?? 0)) / Math.max(1, s.connected));
        const extraCpu = sum(s.cpuMsPerS) - sum(base.cpuMsPerS);
        // A failed step's cars are partly connected, partly not: no per-car figure.
        const ok = s.connected > 0 && s.failed === null;
        const cars = s.failed ? `${s.cars} (failed: ${s.failed})` : String(s.cars);
        return `| ${cars} | ${s.connected} | ${f1(s.connectS)} | ${s.rssKiB.map((r) => f0(r / 1024)).join(', ')} | ${ok ? perCar.map(f0).join(', ') : '-'} | ${ok ? f0(sum(perCar)) : '-'} | ${s.cpuMsPerS.map(f1).join(', ')} | ${ok ? f1((extraCpu * 1000) / s.connected) : '-'} |`;
      }),
    );
    print(lines);
  }
  if (stores.length > 0) {
    const lines: string[] = [];
    const rows: GatewayRow[] = [];
    for (const store of stores) rows.push(await gatewayRun(store));
    lines.push(
      '',
      'gateway with the embedded broker, idle cars',
      '| store | cars | reports/s | gateway CPU ms/s over no cars | gateway µs per report | PostgreSQL backends µs per report |',
      '| ----- | ---- | --------- | ----------------------------- | --------------------- | --------------------------------- |',
      ...rows.map(
        (r) =>
          `| ${r.store} | ${r.connected} | ${f0(r.reportsPerS)} | ${f1(r.gatewayMsPerS)} | ${f0((r.gatewayMsPerS * 1000) / r.reportsPerS)} | ${r.backendMsPerS === null ? '-' : f0((r.backendMsPerS * 1000) / r.reportsPerS)} |`,
      ),
    );
    print(lines);
  }
} finally {
  for (const child of children.splice(0)) await child.close();
  rmSync(work, { recursive: true, force: true });
}
process.exit(0);

// Owns `npm run bench:replicas`: throughput of whole delivery cycles (unlock then lock, over HTTP through the
// cluster's entry point) with 1, 2 and 3 gateway replicas on one PostgreSQL schema and one Mosquitto, as ratios to
// one replica, with the replicas' CPU and memory per cycle (read from /proc), for the capacity plan in README.
import '../../runtime.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, clusterMosquitto, startCluster } from '../../cluster/cluster.ts';
import { loadSeeds } from '../../seeds/index.ts';
import { createMemoryReplayStore, DEFAULT_REPLAY_CAPACITY } from '../../simulator/index.ts';
import { DRIVER_ID, PACKAGE_ID } from '../helpers/delivery.ts';
import { freshPgSchema, pgUrlWithSchema } from '../helpers/pg-schema.ts';

const USAGE = `Usage: npm run bench:replicas -- [--replicas 1,2,3] [--cycles N]

For each replica count: starts the local cluster (npm run cluster's parts: replicas as processes, one Mosquitto,
PostgreSQL in a fresh schema of TEST_DATABASE_URL, the seeded fleet of 11 cars, the entry point), schedules N
deliveries per car (default 10) with their parking confirmed, then runs them: each car's courier unlocks and locks
its deliveries one after the other, all cars at once, through the entry point. Prints cycles/s, the ratio to the
first row, cycle latency p50/p99, and the replicas' CPU ms and RSS per replica.`;

const { values } = parseArgs({
  options: { replicas: { type: 'string' }, cycles: { type: 'string' }, help: { type: 'boolean' } },
  strict: true,
});
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const counts = (values.replicas ?? '1,2,3').split(',').map(Number);
const cyclesPerCar = Number(values.cycles ?? '10');
if (
  counts.some((n) => !Number.isInteger(n) || n < 1 || n > 9) ||
  !(cyclesPerCar >= 1 && cyclesPerCar <= 1000)
) {
  process.stderr.write(`bench:replicas: --replicas takes 1..9 each, --cycles 1..1000\n\n${USAGE}\n`);
  process.exit(2);
}

const seeds = loadSeeds();
const TICKS_PER_S = 100;

/** utime + stime of a process in ms, and its resident memory in MB. */
function usage(pid: number): { cpuMs: number; rssMb: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  // After the ") ", field 3 of stat(5) is index 0: utime is field 14, stime 15, rss (pages) 24.
  const cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
  const rssMb = (Number(fields[21]) * 4096) / 1_048_576;
  return { cpuMs, rssMb };
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

async function call(cluster: Cluster, method: 'GET' | 'POST', path: string, body?: unknown) {
  const res = await fetch(`${cluster.balancer.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${cluster.apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

interface Row {
  replicas: number;
  cycles: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  cpuMsPerCycle: number;
  rssMb: number[];
}

async function run(replicas: number): Promise<Row> {
  const schema = await freshPgSchema();
  const dir = mkdtempSync(join(tmpdir(), 'curbside-bench-replicas-'));
  const cluster = await startCluster({
    dir,
    databaseUrl: pgUrlWithSchema(schema.schema),
    replicas,
    // README's replica figures were measured on one Mosquitto: the bench measures the replicas, not the broker.
    broker: clusterMosquitto(process.env),
    env: {
      VEHICLE_COMMAND_BURST: '100',
      VEHICLE_COMMANDS_PER_MIN: '600',
      RATE_LIMIT_PER_KEY_PER_MIN: '100000',
      MAX_UNLOCKS: '1',
    },
    // The cars keep their used jtis in memory: the file store fsyncs every claim on the bench's one thread, which
    // would measure the simulator (as the main bench does, test/bench/fleet-child.ts).
    fleet: {
      reportIntervalMs: 30_000,
      replayStoreFor: () => createMemoryReplayStore({ capacity: DEFAULT_REPLAY_CAPACITY }),
    },
  });
  try {
    const fleet = cluster.fleet;
    if (!fleet) throw new Error('no fleet');
    const vehicles = seeds.vehicles.filter((v) => fleet.cars.has(v.vin));
    const plans = await Promise.all(
      vehicles.map(async (v) => {
        const linked = await call(cluster, 'POST', '/v1/vehicles', {
          vin: v.vin,
          make: v.make,
          model: v.model,
          year: v.year,
          provider: v.provider,
          ownerId: v.ownerId,
          consent: ['unlock', 'lock'],
        });
        if (linked.status !== 201) throw new Error(`link ${v.vin}: ${linked.status}`);
        const location = seeds.locations.find((l) => l.ownerId === v.ownerId);
        if (!location) throw new Error(`no location for ${v.ownerId}`);
        const loc = await call(cluster, 'POST', '/v1/locations', {
          ownerId: location.ownerId,
          label: location.label,
          kind: location.kind,
          lat: location.lat,
          lon: location.lon,
          radiusM: 200,
          access: 'public',
        });
        const ids: string[] = [];
        for (let i = 0; i < cyclesPerCar; i++) {
          const now = Date.now();
          const d = await call(cluster, 'POST', '/v1/deliveries', {
            vin: v.vin,
            locationId: loc.body.id,
            driverId: DRIVER_ID,
            packageIds: [PACKAGE_ID],
            window: {
              start: new Date(now - 60_000).toISOString(),
              end: new Date(now + 3_600_000).toISOString(),
            },
          });
          if ((await call(cluster, 'POST', `/v1/deliveries/${d.body.id}/parking`)).status !== 200)
            throw new Error(`parking ${v.vin}`);
          ids.push(d.body.id);
        }
        return { ids, position: { lat: location.lat + 0.0003, lon: location.lon } };
      }),
    );
    const before = cluster.replicas.map((r) => usage(r.pid).cpuMs);
    const latencies: number[] = [];
    const started = performance.now();
    await Promise.all(
      plans.map(async ({ ids, position }) => {
        for (const id of ids) {
          const t = performance.now();
          const unlocked = await call(cluster, 'POST', `/v1/deliveries/${id}/unlock`, {
            driverId: DRIVER_ID,
            position,
            packageId: PACKAGE_ID,
          });
          const locked = await call(cluster, 'POST', `/v1/deliveries/${id}/lock`, { driverId: DRIVER_ID });
          if (unlocked.status !== 200 || locked.status !== 200)
            throw new Error(
              `cycle ${id}: ${unlocked.status}/${locked.status} ${JSON.stringify(unlocked.body)}`,
            );
          latencies.push(performance.now() - t);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const after = cluster.replicas.map((r) => usage(r.pid));
    const cpuMs = after.reduce((sum, u, i) => sum + u.cpuMs - (before[i] ?? 0), 0);
    latencies.sort((a, b) => a - b);
    return {
      replicas,
      cycles: latencies.length,
      seconds,
      perSecond: latencies.length / seconds,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      cpuMsPerCycle: cpuMs / latencies.length,
      rssMb: after.map((u) => u.rssMb),
    };
  } finally {
    await cluster.stop();
    await schema.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: Row[] = [];
for (const n of counts) {
  process.stderr.write(`${n} replica(s)…\n`);
  rows.push(await run(n));
}
const base = rows[0]?.perSecond ?? 1;
const lines = [
  `cores: ${(await import('node:os')).availableParallelism()}, cars: 11, cycles per car: ${cyclesPerCar}`,
  '',
  '| replicas | cycles | cycles/s | ratio | p50 ms | p99 ms | replicas CPU ms/cycle | RSS MB per replica |',
  '| -------- | ------ | -------- | ----- | ------ | ------ | --------------------- | ------------------ |',
  ...rows.map(
    (r) =>
      `| ${r.replicas} | ${r.cycles} | ${r.perSecond.toFixed(1)} | ${(r.perSecond / base).toFixed(2)} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.cpuMsPerCycle.toFixed(1)} | ${r.rssMb.map((m) => m.toFixed(0)).join(', ')} |`,
  ),
];
process.stdout.write(`${lines.join('\n')}\n`);
process.exit(0);

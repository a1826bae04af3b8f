// Owns `npm run bench`: the composition root that runs the phases of issues 7 and 14 in order (phase 3 on each
// store), prints the Markdown report on stdout (progress on stderr) and writes the results as JSON into the
// results folder.
import '../../runtime.ts';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { type DevPkiPaths, devPkiPaths, ensureDevPki } from '../../certs/dev-pki.ts';
import { issueFleet } from '../../certs/fleet.ts';
import { issueVehicleIdentity } from '../../certs/identity.ts';
import { createIssuer } from '../../certs/pki.ts';
import { redactUrl } from '../../gateway/store/store.ts';
import { kidFor } from '../../protocols/keys.ts';
import { freshPgSchema, pgUrlWithSchema, TEST_DATABASE_URL } from '../helpers/pg-schema.ts';
import {
  type CycleDriver,
  type CycleRun,
  cyclesOf,
  httpDriver,
  type OpenLoopRun,
  poissonGaps,
  realClock,
  runCycles,
  runOpenLoop,
  uniformGaps,
} from './cycles.ts';
import { benchVin, COURIER_POSITION, carFor, courierId } from './fleet-data.ts';
import { startFloorServer } from './floor.ts';
import type { GatewayStarted } from './gateway-child.ts';
import { type Child, forkChild } from './ipc.ts';
import { type Mosquitto, startMosquitto } from './mosquitto.ts';
import { BenchArgsError, type BenchOptions, parseBenchArgs, type Store, USAGE } from './options.ts';
import { type CpuProfile, topFunctions } from './profile.ts';
import { CPU_PROF_INTERVAL_US } from './profiler.ts';
import { note, ProgressBar } from './progress.ts';
import type { BenchResults, CpuPerCycle, CyclePhase, Skipped, StormFigure } from './report.ts';
import { isPhase, renderReport } from './report.ts';
import { median } from './stats.ts';
import { runTokenPhase } from './tokens.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const GATEWAY_CHILD = join(HERE, 'gateway-child.ts');
const FLEET_CHILD = join(HERE, 'fleet-child.ts');
const FLOOR_CARS_CHILD = join(HERE, 'floor-cars-child.ts');
const DELIVERY_WINDOW_MS = 4 * 3_600_000;
/** After the storm, the broker is left alone this long before its memory is read. */
const SETTLE_MS = 2_000;
/** How long PostgreSQL may take to create the bench's schema before phase 3 on it is skipped. */
const PG_CONNECT_MS = 10_000;

interface Context {
  options: BenchOptions;
  runDir: string;
  work: string;
  pki: DevPkiPaths;
  results: BenchResults;
  /** Everything to stop on the way out, last started first. */
  cleanups: Array<() => Promise<void>>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const cpuMicros = (u: NodeJS.CpuUsage): number => u.user + u.system;

/** CPU seconds of any process, from /proc (Mosquitto's, which is not ours to ask). */
function procCpuMicros(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return Number.NaN;
  }
}

function machine(): BenchResults['machine'] {
  return {
    load: { start: loadavg()[0] as number, end: Number.NaN },
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: totalmem() / 1024 ** 3,
    node: process.version,
    platform: `${platform()} ${release()}`,
  };
}

// ---------------------------------------------------------------- phase 1

async function provision(ctx: Context): Promise<void> {
  const { options } = ctx;
  const needed = Math.max(
    options.phases.has(1) ? options.identities : 0,
    [2, 3, 4].some((p) => options.phases.has(p)) ? options.cars : 0,
    options.phases.has(5) ? options.floorCars : 0,
    1,
  );
  await ensureDevPki({ dir: ctx.pki.dir, vins: [] });
  const bar = new ProgressBar('phase 1 identities to disk', needed);
  const disk = await issueFleet({
    dir: ctx.pki.dir,
    count: needed,
    vinOf: benchVin,
    onProgress: (d) => bar.update(d),
  });
  bar.finish(`${needed} at ${Math.round(disk.perSecond)}/s`);
  if (!options.phases.has(1)) return;
  const issuer = createIssuer({
    certPem: readFileSync(ctx.pki.caCert, 'utf8'),
    keyPem: readFileSync(ctx.pki.caKey, 'utf8'),
  });
  const memBar = new ProgressBar('phase 1 identities in memory', options.identities);
  const started = performance.now();
  for (let i = 0; i < options.identities; i++) {
    issueVehicleIdentity(issuer, benchVin(i));
    if (i % 64 === 63) memBar.update(i + 1);
  }
  const ms = performance.now() - started;
  memBar.update(options.identities);
  memBar.finish(`${options.identities} at ${Math.round((options.identities * 1000) / ms)}/s`);
  ctx.results.identities = {
    memory: { count: options.identities, ms, perSecond: (options.identities * 1000) / ms },
    disk: { count: needed, ms: disk.elapsedMs, perSecond: disk.perSecond },
  };
}

// ---------------------------------------------------------------- children

async function startGatewayChild(
  ctx: Context,
  name: string,
  external: { mqttUrl?: string | undefined; databaseUrl?: string | undefined },
): Promise<{ child: Child; started: GatewayStarted }> {
  const child = await forkChild(GATEWAY_CHILD, { logFile: join(ctx.runDir, `${name}.log`) });
  ctx.cleanups.push(() => child.close());
  const started = await child.call<GatewayStarted>('start', {
    pkiDir: ctx.pki.dir,
    dataDir: join(ctx.work, name),
    ...(external.mqttUrl ? { mqttUrl: external.mqttUrl } : {}),
    ...(external.databaseUrl ? { databaseUrl: external.databaseUrl, pgPool: ctx.options.pgPool } : {}),
    logLevel: ctx.options.logLevel,
  });
  return { child, started };
}

async function connectFleet(
  ctx: Context,
  name: string,
  brokerUrl: string,
  label: string,
): Promise<{ child: Child; storm: StormFigure }> {
  const { options } = ctx;
  const child = await forkChild(FLEET_CHILD, { logFile: join(ctx.runDir, `${name}.log`) });
  ctx.cleanups.push(() => child.close());
  const bar = new ProgressBar(label, options.cars);
  child.onEvent('progress', (data) => bar.update((data as { done: number }).done));
  const result = await child.call<{ connected: number; ms: number; cpuMicros: number }>('start', {
    brokerUrl,
    pkiDir: ctx.pki.dir,
    count: options.cars,
    concurrency: options.connectConcurrency,
    workers: options.simWorkers,
    persistence: options.simState,
    tickMs: options.tickMs,
    reportIntervalMs: options.reportIntervalMs,
  });
  bar.finish(`${result.connected} cars`);
  return {
    child,
    storm: {
      cars: options.cars,
      connected: result.connected,
      ms: result.ms,
      cpuPerCarUs: { 'simulated cars': result.cpuMicros / Math.max(1, result.connected) },
    },
  };
}

// ---------------------------------------------------------------- PostgreSQL

interface PgStore {
  /** DATABASE_URL for the gateway: the fresh schema as search_path, and a name its connection can be found by. */
  url: string;
  /** The PostgreSQL server processes serving the gateway's connections, by their CPU time. */
  backend: Meter;
  drop(): Promise<void>;
}

/** A fresh schema for the PostgreSQL variant of phase 3 (dropped on the way out), or why there is none. */
async function postgresStore(ctx: Context): Promise<PgStore | Skipped> {
  const where = redactUrl(TEST_DATABASE_URL);
  const creating = freshPgSchema();
  let timer: NodeJS.Timeout | undefined;
  let fresh: Awaited<typeof creating>;
  try {
    fresh = await Promise.race([
      creating,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${PG_CONNECT_MS / 1000} s`)), PG_CONNECT_MS);
      }),
    ]);
  } catch (err) {
    // A schema created after the bench gave up on it must not stay behind.
    creating.then((late) => late.drop()).catch(() => undefined);
    const e = err as Error & { code?: string };
    return {
      skipped: `PostgreSQL at ${where} is unreachable (${e.message.split('\n')[0] || e.code || e.name})`,
    };
  } finally {
    clearTimeout(timer);
  }
  let dropped: Promise<void> | null = null;
  const drop = (): Promise<void> => {
    dropped ??= fresh.drop().finally(() => client.end().catch(() => undefined));
    return dropped;
  };
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  // A broken connection only loses the meter; without a listener its error would end the bench.
  client.on('error', () => undefined);
  ctx.cleanups.push(drop);
  await client.connect();
  const appName = `curbside-bench-${fresh.schema}`;
  const url = new URL(pgUrlWithSchema(fresh.schema));
  url.searchParams.set('application_name', appName);
  return {
    url: url.toString(),
    backend: {
      name: 'PostgreSQL backend',
      // The gateway's pool keeps its connections open once made (store.ts), so its backends stay the same
      // processes within a run; one opened during a run counts whole, all of its time being in the run. Their
      // CPU time is in /proc.
      read: async () => {
        const { rows } = await client.query<{ pid: number }>(
          'select pid from pg_stat_activity where application_name = $1',
          [appName],
        );
        if (rows.length === 0) return Number.NaN;
        let sum = 0;
        for (const { pid } of rows) sum += procCpuMicros(pid);
        return sum;
      },
    },
    drop,
  };
}

// ---------------------------------------------------------------- phases 3 and 4

/** Prepares one delivery per courier per cycle, walking each courier on over its share of the fleet. */
function deliveryPlanner(gateway: Child, locationId: string, options: BenchOptions) {
  const walked = new Array<number>(options.couriers).fill(0);
  return async (cycles: number, couriers: number): Promise<string[][]> => {
    const plan: Array<[string, string, string]> = [];
    const shape: number[] = [];
    for (let i = 0; i < couriers; i++) {
      const mine = cyclesOf(i, couriers, cycles);
      shape.push(mine);
      for (let j = 0; j < mine; j++) {
        const car = carFor(i, (walked[i] as number) + j, couriers, options.cars);
        plan.push([benchVin(car), courierId(i), `pkg-${j}`]);
      }
      walked[i] = (walked[i] as number) + mine;
    }
    const ids = await gateway.call<string[]>('schedule', {
      locationId,
      deliveries: plan,
      windowMs: DELIVERY_WINDOW_MS,
    });
    const out: string[][] = [];
    let at = 0;
    for (const mine of shape) {
      out.push(ids.slice(at, at + mine));
      at += mine;
    }
    return out;
  };
}

interface Meter {
  name: string;
  read(): Promise<number>;
}

async function measuredRuns(input: {
  ctx: Context;
  label: string;
  driverFor: (cycles: number, couriers: number) => Promise<CycleDriver & { close?: () => void }>;
  meters: Meter[];
  /** Run after the closed-loop runs, given their median cycles/s. */
  openLoop?: (closedLoopPerSecond: number) => Promise<OpenLoopRun | Skipped>;
}): Promise<{ runs: CycleRun[]; cpu: CpuPerCycle[]; openLoop?: OpenLoopRun | Skipped; alone?: CycleRun }> {
  const { options } = input.ctx;
  const runs: CycleRun[] = [];
  const cpu: CpuPerCycle[] = [];
  if (options.warmup > 0) {
    const driver = await input.driverFor(options.warmup, options.couriers);
    const warm = await runCycles({ couriers: options.couriers, cycles: options.warmup, driver });
    driver.close?.();
    if (warm.errors > 0) note(`${input.label} warm-up: ${warm.errors} errors, e.g. ${warm.errorSamples[0]}`);
  }
  for (let r = 0; r < options.repeat; r++) {
    const driver = await input.driverFor(options.cycles, options.couriers);
    const bar = new ProgressBar(`${input.label} run ${r + 1}/${options.repeat}`, options.cycles);
    const before = await Promise.all(input.meters.map((m) => m.read()));
    const run = await runCycles({
      couriers: options.couriers,
      cycles: options.cycles,
      driver,
      onProgress: (d) => bar.update(d),
    });
    const after = await Promise.all(input.meters.map((m) => m.read()));
    driver.close?.();
    bar.finish(
      `${Math.round(run.cyclesPerSecond)} cycles/s, unlock p99 ${run.unlock.p99.toFixed(1)} ms, ${run.errors} errors`,
    );
    if (run.errors > 0) note(`  errors, e.g.: ${run.errorSamples.join(' | ')}`);
    runs.push(run);
    const perCycle: CpuPerCycle = {};
    input.meters.forEach((m, i) => {
      perCycle[m.name] = ((after[i] as number) - (before[i] as number)) / Math.max(1, run.completed);
    });
    cpu.push(perCycle);
  }
  const openLoop = input.openLoop
    ? await input.openLoop(median(runs.map((r) => r.cyclesPerSecond)))
    : undefined;
  const measured = { runs, cpu, ...(openLoop ? { openLoop } : {}) };
  if (options.latencyCycles === 0) return measured;
  const driver = await input.driverFor(options.latencyCycles, 1);
  const bar = new ProgressBar(`${input.label}, one courier alone`, options.latencyCycles);
  const alone = await runCycles({
    couriers: 1,
    cycles: options.latencyCycles,
    driver,
    onProgress: (d) => bar.update(d),
  });
  driver.close?.();
  bar.finish(
    `unlock p50 ${alone.unlock.p50.toFixed(1)} ms, p99 ${alone.unlock.p99.toFixed(1)} ms, ${alone.errors} errors`,
  );
  return { ...measured, alone };
}

async function brokerPhase(
  ctx: Context,
  input: {
    name: string;
    label: string;
    mqtt?: Mosquitto;
    /** The PostgreSQL store; SQLite when absent. */
    database?: PgStore;
    profile: boolean;
    /** Whether this gateway's storm and memory are phase 2's figures. */
    phase2: boolean;
    openLoop: boolean;
  },
): Promise<CyclePhase> {
  const { options } = ctx;
  const { child: gateway, started } = await startGatewayChild(ctx, `${input.name}-gateway`, {
    mqttUrl: input.mqtt?.url,
    databaseUrl: input.database?.url,
  });
  const vins = Array.from({ length: options.cars }, (_, i) => benchVin(i));
  const { locationId } = await gateway.call<{ locationId: string }>('link', { vins });
  const before = input.phase2 ? await gateway.call<{ memory: NodeJS.MemoryUsage }>('memory') : null;
  const brokerCpu = input.mqtt
    ? async () => procCpuMicros((input.mqtt as Mosquitto).pid)
    : async () => cpuMicros(await gateway.call<NodeJS.CpuUsage>('cpu'));
  const brokerCpuBefore = await brokerCpu();
  const { child: fleet, storm } = await connectFleet(
    ctx,
    `${input.name}-fleet`,
    started.brokerUrl,
    `${input.label}: connect storm`,
  );
  storm.cpuPerCarUs = {
    [input.mqtt ? 'Mosquitto' : 'gateway + broker']:
      ((await brokerCpu()) - brokerCpuBefore) / Math.max(1, storm.connected),
    ...storm.cpuPerCarUs,
  };
  if (before) {
    await sleep(SETTLE_MS);
    const after = await gateway.call<{ memory: NodeJS.MemoryUsage; clients: number | null }>('memory');
    const sim = await fleet.call<{ memory: NodeJS.MemoryUsage }>('memory');
    ctx.results.storm = storm;
    ctx.results.memory = {
      before: before.memory,
      after: after.memory,
      cars: storm.connected,
      rssPerCarKiB: (after.memory.rss - before.memory.rss) / 1024 / storm.connected,
      heapPerCarKiB: (after.memory.heapUsed - before.memory.heapUsed) / 1024 / storm.connected,
      simulatorRssPerCarKiB: sim.memory.rss / 1024 / storm.connected,
    };
    note(
      `phase 2: broker RSS ${ctx.results.memory.rssPerCarKiB.toFixed(1)} KiB per car, heap ${ctx.results.memory.heapPerCarKiB.toFixed(1)} KiB (${after.clients} clients)`,
    );
  }
  const plan = deliveryPlanner(gateway, locationId, options);
  const driverFor = async (cycles: number, couriers: number) =>
    httpDriver({
      baseUrl: started.baseUrl,
      apiKey: started.apiKey,
      couriers,
      deliveries: await plan(cycles, couriers),
      driverId: courierId,
      position: COURIER_POSITION,
      packageId: (_i, j) => `pkg-${j}`,
    });
  const meters: Meter[] = [
    {
      name: input.mqtt ? 'gateway' : 'gateway + broker',
      read: async () => cpuMicros(await gateway.call<NodeJS.CpuUsage>('cpu')),
    },
    ...(input.mqtt
      ? [{ name: 'Mosquitto', read: async () => procCpuMicros((input.mqtt as Mosquitto).pid) }]
      : []),
    ...(input.database ? [input.database.backend] : []),
    { name: 'simulated cars', read: async () => cpuMicros(await fleet.call<NodeJS.CpuUsage>('cpu')) },
    { name: 'couriers', read: async () => cpuMicros(process.cpuUsage()) },
  ];
  const openLoop =
    input.openLoop && options.openLoopCycles > 0
      ? async (closedLoopPerSecond: number): Promise<OpenLoopRun | Skipped> => {
          const rate = closedLoopPerSecond / 2;
          if (!(rate > 0)) return { skipped: 'no closed-loop cycles/s to take half of' };
          // The same C couriers, each with its own cars; arrivals take turns over them, so each takes about
          // count/C cycles: half as many again are prepared, and a courier that used them all retires.
          const cap = options.couriers;
          const perSlot = Math.ceil((options.openLoopCycles / cap) * 1.5) + 2;
          const driver = await driverFor(perSlot * cap, cap);
          const bar = new ProgressBar(
            `${input.label}: open loop, ${options.arrivals} arrivals at ${rate.toFixed(1)}/s`,
            options.openLoopCycles,
          );
          const run = await runOpenLoop({
            ratePerSecond: rate,
            count: options.openLoopCycles,
            maxMs: options.openLoopSeconds * 1000,
            cap,
            perSlot,
            gapMs: options.arrivals === 'poisson' ? poissonGaps(rate, Math.random) : uniformGaps(rate),
            clock: realClock,
            driver,
            onProgress: (d) => bar.update(d),
          });
          driver.close();
          bar.finish(
            `unlock p50 ${run.unlock.p50.toFixed(1)} ms, p99 ${run.unlock.p99.toFixed(1)} ms, ${run.dropped + run.exhausted} dropped, ${run.errors} errors`,
          );
          if (run.errors > 0) note(`  errors, e.g.: ${run.errorSamples.join(' | ')}`);
          return run;
        }
      : undefined;
  const measured = await measuredRuns({
    ctx,
    label: input.label,
    driverFor,
    meters,
    ...(openLoop ? { openLoop } : {}),
  });
  if (input.profile) {
    const cycles = Math.min(options.cycles, 5_000);
    const driver = await driverFor(cycles, options.couriers);
    const file = join(ctx.runDir, 'phase3-gateway.cpuprofile');
    await gateway.call('profileStart', { intervalUs: CPU_PROF_INTERVAL_US });
    const bar = new ProgressBar(`${input.label}: profiled pass`, cycles);
    const run = await runCycles({
      couriers: options.couriers,
      cycles,
      driver,
      onProgress: (d) => bar.update(d),
    });
    await gateway.call('profileStop', { file });
    driver.close();
    bar.finish(`${Math.round(run.cyclesPerSecond)} cycles/s under the profiler`);
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    ctx.results.profile = {
      file: relative(process.cwd(), file),
      top: topFunctions(profile, 5),
      phase: input.label,
    };
  }
  await fleet.close();
  await gateway.close();
  return { label: input.label, storm, ...measured };
}

/**
 * Phase 3 on each store of --store, one after the other in the same run, each with a gateway and a fleet of
 * its own: the embedded broker lives in the gateway's process, so a gateway on another store brings another
 * broker, and the cars have to connect to it (pointing it at the first gateway's broker instead would put two
 * gateways on the cars' topics). Phase 2's figures come from the first; only --phases 2: SQLite alone.
 */
async function storePhases(ctx: Context): Promise<void> {
  const { options, results } = ctx;
  const phase3 = options.phases.has(3);
  const stores: readonly Store[] = phase3 ? options.stores : options.phases.has(2) ? ['sqlite'] : [];
  let first = true;
  for (const store of stores) {
    let database: PgStore | undefined;
    if (store === 'postgres') {
      const made = await postgresStore(ctx);
      if ('skipped' in made) {
        results.postgres = made;
        results.notes.push(`Phase 3 on PostgreSQL skipped: ${made.skipped}.`);
        note(`phase 3 on PostgreSQL skipped: ${made.skipped}`);
        continue;
      }
      database = made;
    }
    const phase = await brokerPhase(ctx, {
      name: store === 'sqlite' ? 'embedded' : 'embedded-postgres',
      label: `phase 3 embedded, ${store === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`,
      ...(database ? { database } : {}),
      profile: first && phase3 && options.profile,
      phase2: first,
      openLoop: phase3,
    });
    await database?.drop();
    first = false;
    if (!phase3) continue;
    if (store === 'sqlite') results.embedded = phase;
    else results.postgres = phase;
  }
}

// ---------------------------------------------------------------- phase 5

async function floorPhase(ctx: Context): Promise<CyclePhase> {
  const { options } = ctx;
  const signingKey = createPrivateKey(readFileSync(ctx.pki.tokenSigningKey, 'utf8'));
  const kid = await kidFor(createPublicKey(signingKey));
  const server = await startFloorServer({ pki: ctx.pki, signingKey, kid });
  ctx.cleanups.push(() => server.close());
  const cars = await forkChild(FLOOR_CARS_CHILD, { logFile: join(ctx.runDir, 'floor-cars.log') });
  ctx.cleanups.push(() => cars.close());
  const bar = new ProgressBar('phase 5 floor: connect', options.floorCars);
  cars.onEvent('progress', (data) => bar.update((data as { done: number }).done));
  const serverCpu = cpuMicros(process.cpuUsage());
  const result = await cars.call<{ connected: number; ms: number; cpuMicros: number }>('start', {
    port: server.port,
    pkiDir: ctx.pki.dir,
    count: options.floorCars,
    concurrency: options.connectConcurrency,
  });
  bar.finish(`${result.connected} cars`);
  const stormCpuPerCarUs = {
    'floor server': (cpuMicros(process.cpuUsage()) - serverCpu) / Math.max(1, result.connected),
    'floor cars': result.cpuMicros / Math.max(1, result.connected),
  };
  const measured = await measuredRuns({
    ctx,
    label: 'phase 5 floor',
    driverFor: async (_cycles, couriers) => server.driver(couriers, options.floorCars),
    meters: [
      { name: 'floor server', read: async () => cpuMicros(process.cpuUsage()) },
      { name: 'simulated cars', read: async () => cpuMicros(await cars.call<NodeJS.CpuUsage>('cpu')) },
    ],
  });
  await cars.close();
  await server.close();
  return {
    label: 'floor',
    storm: {
      cars: options.floorCars,
      connected: result.connected,
      ms: result.ms,
      cpuPerCarUs: stormCpuPerCarUs,
    },
    ...measured,
  };
}

// ---------------------------------------------------------------- phase 6

async function tokenPhase(ctx: Context): Promise<void> {
  const privateKey = createPrivateKey(readFileSync(ctx.pki.tokenSigningKey, 'utf8'));
  const publicKey = createPublicKey(privateKey);
  const kid = await kidFor(publicKey);
  ctx.results.tokens = [];
  for (let r = 0; r < ctx.options.repeat; r++) {
    const run = await runTokenPhase({ ops: ctx.options.tokenOps, privateKey, publicKey, kid });
    note(
      `phase 6 run ${r + 1}/${ctx.options.repeat}: mint ${Math.round(run.mint.ours)}/s (jose ${Math.round(run.mint.jose)}), verify ${Math.round(run.verify.ours)}/s (jose ${Math.round(run.verify.jose)})`,
    );
    ctx.results.tokens.push(run);
  }
}

// ---------------------------------------------------------------- main

async function run(options: BenchOptions, argv: string[]): Promise<number> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const runDir = join(options.out, stamp);
  mkdirSync(runDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'curbside-bench-'));
  const ctx: Context = {
    options,
    runDir,
    work,
    pki: devPkiPaths(join(work, 'pki')),
    cleanups: [],
    results: {
      startedAt: new Date().toISOString(),
      command: ['npm run bench', ...(argv.length > 0 ? ['--', ...argv] : [])].join(' '),
      machine: machine(),
      options: { ...options, phases: [...options.phases].sort() },
      notes: [],
    },
  };
  const { results } = ctx;
  try {
    await provision(ctx);
    await storePhases(ctx);
    if (options.phases.has(4)) {
      if (options.mosquitto === null) {
        results.mosquitto = { skipped: '--mosquitto off' };
      } else {
        let mosquitto: Mosquitto | null = null;
        try {
          mosquitto = await startMosquitto({
            binary: options.mosquitto,
            dir: work,
            pki: ctx.pki,
            logFile: join(runDir, 'mosquitto.log'),
          });
        } catch (err) {
          results.mosquitto = { skipped: (err as Error).message };
          results.notes.push(`Phase 4 skipped: ${(err as Error).message}.`);
          note(`phase 4 skipped: ${(err as Error).message}`);
        }
        if (mosquitto) {
          ctx.cleanups.push(() => (mosquitto as Mosquitto).stop());
          results.mosquitto = await brokerPhase(ctx, {
            name: 'mosquitto',
            label: 'phase 4 Mosquitto',
            mqtt: mosquitto,
            profile: false,
            phase2: false,
            openLoop: false,
          });
          await mosquitto.stop();
        }
      }
    }
    if (options.phases.has(5)) results.floor = await floorPhase(ctx);
    if (options.phases.has(6)) await tokenPhase(ctx);
  } finally {
    for (const cleanup of ctx.cleanups.reverse()) await cleanup().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
  results.machine.load.end = loadavg()[0] as number;
  const phases = [results.embedded, results.postgres, results.mosquitto, results.floor].filter(isPhase);
  const errors = phases.reduce(
    (sum, p) =>
      sum +
      p.runs.reduce((n, r) => n + r.errors, 0) +
      (p.openLoop && 'errors' in p.openLoop ? p.openLoop.errors : 0),
    0,
  );
  if (errors > 0)
    results.notes.push(`${errors} cycles failed: the zero-error requirement is not met (see the JSON).`);
  const report = renderReport(results);
  writeFileSync(join(runDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(runDir, 'report.md'), report);
  process.stdout.write(report);
  note(`results: ${join(runDir, 'results.json')}`);
  return errors > 0 ? 1 : 0;
}

const argv = process.argv.slice(2);
let command: ReturnType<typeof parseBenchArgs>;
try {
  command = parseBenchArgs(argv);
} catch (err) {
  if (!(err instanceof BenchArgsError)) throw err;
  console.error(`bench: ${err.message} (see --help)`);
  process.exit(2);
}
if (command.kind === 'help') {
  console.log(USAGE);
  process.exit(0);
}
if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
  console.error('bench: run with node --expose-gc (npm run bench does)');
  process.exit(2);
}
run(command.options, argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);

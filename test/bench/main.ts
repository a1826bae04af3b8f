// Owns `npm run bench`: the composition root that runs the phases of issue 7 in order, prints the Markdown
// report on stdout (progress on stderr) and writes the results as JSON into the results folder.
import '../../runtime.ts';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DevPkiPaths, devPkiPaths, ensureDevPki } from '../../certs/dev-pki.ts';
import { issueFleet } from '../../certs/fleet.ts';
import { issueVehicleIdentity } from '../../certs/identity.ts';
import { createIssuer } from '../../certs/pki.ts';
import { kidFor } from '../../protocols/keys.ts';
import { type CycleDriver, type CycleRun, cyclesOf, httpDriver, runCycles } from './cycles.ts';
import { benchVin, COURIER_POSITION, carFor, courierId } from './fleet-data.ts';
import { startFloorServer } from './floor.ts';
import type { GatewayStarted } from './gateway-child.ts';
import { type Child, forkChild } from './ipc.ts';
import { type Mosquitto, startMosquitto } from './mosquitto.ts';
import { BenchArgsError, type BenchOptions, parseBenchArgs, USAGE } from './options.ts';
import { type CpuProfile, topFunctions } from './profile.ts';
import { CPU_PROF_INTERVAL_US } from './profiler.ts';
import { note, ProgressBar } from './progress.ts';
import type { BenchResults, CpuPerCycle, CyclePhase, StormFigure } from './report.ts';
import { renderReport } from './report.ts';
import { runTokenPhase } from './tokens.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const GATEWAY_CHILD = join(HERE, 'gateway-child.ts');
const FLEET_CHILD = join(HERE, 'fleet-child.ts');
const FLOOR_CARS_CHILD = join(HERE, 'floor-cars-child.ts');
const DELIVERY_WINDOW_MS = 4 * 3_600_000;
/** After the storm, the broker is left alone this long before its memory is read. */
const SETTLE_MS = 2_000;

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
  mqttUrl?: string,
): Promise<{ child: Child; started: GatewayStarted }> {
  const child = await forkChild(GATEWAY_CHILD, { logFile: join(ctx.runDir, `${name}.log`) });
  ctx.cleanups.push(() => child.close());
  const started = await child.call<GatewayStarted>('start', {
    pkiDir: ctx.pki.dir,
    dataDir: join(ctx.work, name),
    ...(mqttUrl ? { mqttUrl } : {}),
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
}): Promise<{ runs: CycleRun[]; cpu: CpuPerCycle[]; alone?: CycleRun }> {
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
  if (options.latencyCycles === 0) return { runs, cpu };
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
  return { runs, cpu, alone };
}

async function brokerPhase(
  ctx: Context,
  input: { name: string; label: string; mqtt?: Mosquitto; profile: boolean },
): Promise<CyclePhase> {
  const { options } = ctx;
  const { child: gateway, started } = await startGatewayChild(ctx, `${input.name}-gateway`, input.mqtt?.url);
  const vins = Array.from({ length: options.cars }, (_, i) => benchVin(i));
  const { locationId } = await gateway.call<{ locationId: string }>('link', { vins });
  const before =
    input.name === 'embedded' ? await gateway.call<{ memory: NodeJS.MemoryUsage }>('memory') : null;
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
    { name: 'simulated cars', read: async () => cpuMicros(await fleet.call<NodeJS.CpuUsage>('cpu')) },
    { name: 'couriers', read: async () => cpuMicros(process.cpuUsage()) },
  ];
  const measured = await measuredRuns({ ctx, label: input.label, driverFor, meters });
  if (input.profile) {
    const cycles = Math.min(options.cycles, 5_000);
    const driver = await driverFor(cycles, options.couriers);
    const file = join(ctx.runDir, `phase3-gateway.cpuprofile`);
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
    ctx.results.profile = { file: relative(process.cwd(), file), top: topFunctions(profile, 5) };
  }
  await fleet.close();
  await gateway.close();
  return { label: input.label, storm, ...measured };
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
    if (options.phases.has(2) || options.phases.has(3)) {
      const phase = await brokerPhase(ctx, {
        name: 'embedded',
        label: 'phase 3 embedded',
        profile: options.profile && options.phases.has(3),
      });
      if (options.phases.has(3)) results.embedded = phase;
    }
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
  const errors = (results.embedded?.runs ?? [])
    .concat(
      results.mosquitto && 'runs' in results.mosquitto ? results.mosquitto.runs : [],
      results.floor?.runs ?? [],
    )
    .reduce((sum, r) => sum + r.errors, 0);
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

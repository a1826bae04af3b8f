import '../runtime.ts';
import { loadSeeds } from '../seeds/index.ts';
import { parseCli, USAGE } from './cli.ts';
import { startControlServer } from './control.ts';
import { SimulatorError } from './errors.ts';
import { FLAW_CHECKS } from './flaws.ts';
import { readFleetPki } from './fleet-pki.ts';
import { startFleetRun } from './fleet-workers.ts';
import { loadScenario, playScenario, type Scenario } from './scenario.ts';
import type { Logger } from './transport.ts';

const DEFAULT_SEED = 1;

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

function line(msg: string, fields: Record<string, unknown>): string {
  const parts = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return [msg, ...parts].join(' ');
}

const consoleLogger: Logger = {
  info: (fields, msg) => console.log(line(msg, fields)),
  warn: (fields, msg) => console.error(line(`warn: ${msg}`, fields)),
  error: (fields, msg) => console.error(line(`error: ${msg}`, fields)),
};

function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      // A second signal while closing means the operator does not want to wait.
      process.once('SIGINT', () => process.exit(EXIT_FAILED));
      process.once('SIGTERM', () => process.exit(EXIT_FAILED));
      resolve(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

async function main(argv: string[]): Promise<number> {
  const usage = (reason: string): number => {
    console.error(`simulator: ${reason} (see --help)`);
    return EXIT_USAGE;
  };
  let command: ReturnType<typeof parseCli>;
  try {
    command = parseCli(argv);
  } catch (err) {
    if (err instanceof SimulatorError) return usage(err.message);
    throw err;
  }
  if (command.kind === 'help') {
    console.log(USAGE);
    return EXIT_OK;
  }
  const { options } = command;
  const seeds = loadSeeds();
  const unknown = options.vins.find((vin) => !seeds.vehicles.some((v) => v.vin === vin));
  if (unknown !== undefined) return usage(`--vin ${unknown} is not in seeds/fleet.json`);
  const vehicles =
    options.vins.length === 0 ? seeds.vehicles : seeds.vehicles.filter((v) => options.vins.includes(v.vin));

  let scenario: Scenario = {};
  try {
    // Read here only to refuse a missing PKI with one line before any worker starts; each worker reads its own.
    readFleetPki(options.certsDir);
    if (options.faultsFile !== undefined) scenario = loadScenario(options.faultsFile);
  } catch (err) {
    if (err instanceof SimulatorError) return usage(err.message);
    throw err;
  }
  const named = [
    ...Object.keys(scenario.faults?.cars ?? {}),
    ...(scenario.steps ?? []).flatMap((s) => s.vin ?? []),
  ];
  const stranger = named.find((vin) => !vehicles.some((v) => v.vin === vin));
  if (stranger !== undefined) return usage(`${options.faultsFile}: ${stranger} is not a simulated car`);
  // Always present, so the control API can inject faults into a run that started without any; each worker
  // builds the same seeded plan, so a car's faults do not depend on the worker it lands on.
  const faults = { seed: options.seed ?? scenario.seed ?? DEFAULT_SEED, plan: scenario.faults };

  const fleet = await startFleetRun({
    brokerUrl: options.brokerUrl,
    vehicles,
    certsDir: options.certsDir,
    dataDir: options.dataDir,
    catalog: seeds.catalog,
    includeIncompatible: options.includeIncompatible,
    reportIntervalMs: options.reportIntervalMs,
    failsafeRelockMs: options.failsafeRelockMs,
    servername: options.servername,
    logger: consoleLogger,
    faults,
    flaws: options.flaws ?? [],
    workers: options.workers,
  });
  for (const s of fleet.skipped) console.log(line('skipped', { vin: s.vin, reason: s.reason }));
  // Said loudly, on both streams: these cars break the protocol on purpose.
  for (const flaw of options.flaws ?? []) {
    const warning = line('FLAWED: every car deliberately breaks the protocol', {
      flaw,
      check: FLAW_CHECKS[flaw],
    });
    console.log(warning);
    console.error(warning);
  }
  if (fleet.vins().length === 0) return usage('no compatible vehicle selected (try --include-incompatible)');
  console.log(line('cars up', { cars: fleet.vins().length, workers: fleet.workers }));
  console.log(
    line('faults', { seed: faults.seed, file: options.faultsFile, steps: scenario.steps?.length ?? 0 }),
  );
  const control =
    options.controlPort === undefined
      ? null
      : await startControlServer({ fleet, faults: null, port: options.controlPort });
  if (control) console.log(line('control API listening', { url: `http://127.0.0.1:${control.port}` }));
  const run = playScenario(fleet, scenario.steps ?? [], consoleLogger);

  // A worker that dies takes its cars with it: the simulator says which, stops the others and fails.
  const ended = await Promise.race([
    untilSignal().then((signal) => ({ signal, crash: null })),
    fleet.crashed.then((crash) => ({ signal: null, crash })),
  ]);
  if (ended.crash) console.error(`simulator: ${ended.crash.code} ${ended.crash.message}`);
  else console.log(line('stopping', { signal: ended.signal, cars: fleet.vins().length }));
  run.cancel();
  await control?.close();
  const counts = ended.crash ? null : (await fleet.faultReport()).counts;
  await fleet.stop();
  if (ended.crash) return EXIT_FAILED;
  console.log(line('fault counts', counts ?? {}));
  return EXIT_OK;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const code = err instanceof SimulatorError ? ` ${err.code}` : '';
    console.error(`simulator:${code} ${err instanceof Error ? err.message : String(err)}`);
    process.exit(EXIT_FAILED);
  },
);

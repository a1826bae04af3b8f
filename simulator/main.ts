import '../runtime.ts';
import { loadSeeds } from '../seeds/index.ts';
import { parseCli, USAGE } from './cli.ts';
import { startControlServer } from './control.ts';
import { SimulatorError } from './errors.ts';
import { createFleetFaults } from './faults.ts';
import { FLAW_CHECKS } from './flaws.ts';
import { startFleet } from './fleet.ts';
import { readFleetPki } from './fleet-pki.ts';
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

  let pki: ReturnType<typeof readFleetPki>;
  let scenario: Scenario = {};
  try {
    pki = readFleetPki(options.certsDir);
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
  // Always present, so the control API can inject faults into a run that started without any.
  const faults = createFleetFaults({
    seed: options.seed ?? scenario.seed ?? DEFAULT_SEED,
    plan: scenario.faults,
  });

  const fleet = await startFleet({
    brokerUrl: options.brokerUrl,
    vehicles,
    pki: pki.pki,
    trustedKeys: pki.trustedKeys,
    dataDir: options.dataDir,
    catalog: seeds.catalog,
    includeIncompatible: options.includeIncompatible,
    reportIntervalMs: options.reportIntervalMs,
    failsafeRelockMs: options.failsafeRelockMs,
    servername: options.servername,
    logger: consoleLogger,
    faults,
    flaws: options.flaws ?? [],
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
  if (fleet.cars.size === 0) return usage('no compatible vehicle selected (try --include-incompatible)');
  console.log(
    line('faults', { seed: faults.seed, file: options.faultsFile, steps: scenario.steps?.length ?? 0 }),
  );
  const control =
    options.controlPort === undefined
      ? null
      : await startControlServer({ fleet, faults, port: options.controlPort });
  if (control) console.log(line('control API listening', { url: `http://127.0.0.1:${control.port}` }));
  const run = playScenario(fleet, scenario.steps ?? [], consoleLogger);

  const signal = await untilSignal();
  console.log(line('stopping', { signal, cars: fleet.cars.size }));
  run.cancel();
  await control?.close();
  await fleet.stop();
  console.log(line('fault counts', faults.counts()));
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

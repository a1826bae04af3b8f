// Owns `npm start`: gateway, embedded broker and the simulated fleet in one process, plus the scripted demo delivery.
// It is the one program that wires gateway/ and simulator/ together; neither imports the other.
import '../runtime.ts';
import { resolve } from 'node:path';
import { StartupError } from '../gateway/platform/bootstrap.ts';
import { ConfigError, loadConfig } from '../gateway/platform/config.ts';
import { createLogger, flushLogger } from '../gateway/platform/logger.ts';
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  parseProgramArgs,
  programHelp,
  watchStopSignals,
} from '../gateway/platform/program.ts';
import { loadSeeds } from '../seeds/index.ts';
import {
  CONTROL_HOST,
  type ControlServer,
  createFleetFaults,
  startControlServer,
} from '../simulator/index.ts';
import { linkFleetForConsole } from './script.ts';
import { playDemo, startDemoSystem } from './system.ts';

const USAGE = `Usage: npm start [-- --help]

Runs the gateway, the embedded MQTT broker and the simulated fleet, and keeps serving until SIGINT or SIGTERM
(which drain in-flight commands first, at any point once the HTTP port is open). On a fresh store (no vehicle
ever linked) it first plays a demo delivery; later starts leave the store as its owners left it and say how
to replay the demo (npm run demo). The demo prints on stdout; logs go to stderr, at warn unless LOG_LEVEL
says otherwise.`;

const args = parseProgramArgs(process.argv.slice(2));
if (args.kind === 'help') {
  process.stdout.write(programHelp(USAGE));
  process.exit(EXIT_OK);
}
if (args.kind === 'usage') {
  console.error(`npm start: ${args.reason}`);
  process.exit(EXIT_USAGE);
}

// Before the HTTP port opens: a signal from then on drains, even while the fleet starts or the demo plays.
const stop = watchStopSignals();

let control: ControlServer | null = null;
try {
  // The demo prints a human timeline on stdout; logs go to stderr at warn unless LOG_LEVEL says otherwise.
  const defaults = { LOG_LEVEL: 'warn' };
  let config = loadConfig({ env: process.env, defaults });
  // Fault injection is always there, so that the console can take a car offline, skew its clock or drain its
  // battery. The simulator's control API listens before the gateway starts, so that the gateway is given its URL
  // by configuration like any other setting; it serves the cars once they are up.
  const faults = createFleetFaults({ seed: 1 });
  if (config.SIMULATOR === 'on' && config.SIMULATOR_CONTROL_URL === undefined) {
    control = await startControlServer({ faults, port: 0 });
    config = loadConfig({
      env: process.env,
      defaults: { ...defaults, SIMULATOR_CONTROL_URL: `http://${CONTROL_HOST}:${control.port}` },
    });
  }
  const runConfig = config;
  const logger = createLogger({
    level: config.LOG_LEVEL,
    pretty: config.LOG_PRETTY === 'on',
    destination: 2,
  });
  const print = (line: string): void => console.log(line);
  const system = await startDemoSystem({
    config,
    seeds: loadSeeds(),
    logger,
    print,
    stop,
    showApiKey: true,
    faults,
    control,
    demo: async (ctx) => {
      if (runConfig.DEMO === 'off') return;
      if (ctx.freshStore) {
        await playDemo(ctx, print);
        // On a fresh store only (never on one an owner has changed): the console shows what the gateway knows,
        // so the rest of the fleet is linked too, and each car reports now rather than at its next report.
        const { booted, fleet, seeds } = ctx;
        if (!booted.apiKey) return;
        const linked = await linkFleetForConsole({
          baseUrl: booted.baseUrl,
          apiKey: booted.apiKey,
          vehicles: [...fleet.cars.values()].map((c) => c.vehicle),
          locations: seeds.locations,
        });
        for (const c of fleet.cars.values()) c.connection.reportState();
        if (linked.length > 0)
          print(
            `Linked ${linked.length} more simulated cars for the console (each owner consents: unlock, lock).`,
          );
        return;
      }
      // Replaying on this store would link again a car its owner unlinked, or unlock one the owner blocked.
      print(
        `\nThe demo delivery plays only on a fresh store: ${resolve(config.DATA_DIR)} has had vehicles linked, ` +
          'and each stays as its owner left it (linked, blocked or unlinked).\n' +
          'Replay the demo with `npm run demo` (its own fresh store and ports: this store is not touched), ' +
          `or start over: stop, remove ${resolve(config.DATA_DIR)}, npm start.`,
      );
    },
  });
  void system.startUp.then(() => {
    if (stop.received()) return;
    print(`\nConsole: ${system.booted.baseUrl}/console (sign in with the API key above).`);
    print('Serving. Ctrl-C stops.');
  });
  const signal = await stop.first;
  print(`\nStopping (${signal}): draining in-flight commands, then the cars, the broker and the store.`);
  logger.info({ event: 'shutdown', signal }, 'stopping');
  await system.shutdown();
  await control?.close();
  await flushLogger(logger);
  process.exit(EXIT_OK);
} catch (err) {
  const known = err instanceof ConfigError || err instanceof StartupError;
  console.error(known ? (err as Error).message : `start failed: ${(err as Error).message}`);
  await control?.close();
  process.exit(EXIT_FAILED);
}

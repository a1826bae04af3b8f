// Owns `npm start`: gateway, embedded broker and the simulated fleet in one process, plus the scripted demo delivery.
// It is the one program that wires gateway/ and simulator/ together; neither imports the other.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootGateway, StartupError, untilSignal } from '../gateway/platform/bootstrap.ts';
import { ConfigError, loadConfig } from '../gateway/platform/config.ts';
import { createLogger, flushLogger } from '../gateway/platform/logger.ts';
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  parseProgramArgs,
  programHelp,
} from '../gateway/platform/program.ts';
import { loadSeeds, type SeedLocation } from '../seeds/index.ts';
import {
  CONTROL_HOST,
  type ControlServer,
  createFleetFaults,
  type Fleet,
  readFleetPki,
  startControlServer,
  startFleet,
} from '../simulator/index.ts';
import { linkFleetForConsole, playDemoDelivery } from './script.ts';

const USAGE = `Usage: npm start [-- --help]

Runs the gateway, the embedded MQTT broker and the simulated fleet, plays a demo delivery, and keeps
serving until SIGINT or SIGTERM (which drain in-flight commands first). The demo prints on stdout; logs
go to stderr, at warn unless LOG_LEVEL says otherwise.`;

const args = parseProgramArgs(process.argv.slice(2));
if (args.kind === 'help') {
  process.stdout.write(programHelp(USAGE));
  process.exit(EXIT_OK);
}
if (args.kind === 'usage') {
  console.error(`npm start: ${args.reason}`);
  process.exit(EXIT_USAGE);
}

const _read = (path: string): string => readFileSync(path, 'utf8');

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
  const seeds = loadSeeds();
  const logger = createLogger({
    level: config.LOG_LEVEL,
    pretty: config.LOG_PRETTY === 'on',
    destination: 2,
  });
  const print = (line: string): void => console.log(line);
  const booted = await bootGateway({
    config,
    catalog: seeds.catalog,
    seededVins: seeds.vehicles.map((v) => v.vin),
    logger,
    print,
  });
  const { pki } = booted;
  print(
    `Gateway HTTP API on ${booted.baseUrl}, MQTT broker on ${booted.gateway.brokerUrl} (TLS 1.3, mutual TLS).`,
  );
  print(
    `API key: in ${join(config.CERTS_DIR, 'api-key')} (use: Authorization: Bearer $(cat ${join(config.CERTS_DIR, 'api-key')})).`,
  );

  let fleet: Fleet | null = null;
  if (config.SIMULATOR === 'on') {
    fleet = await startFleet({
      brokerUrl: booted.gateway.brokerUrl,
      vehicles: seeds.vehicles,
      ...readFleetPki(pki.dir),
      dataDir: join(config.DATA_DIR, 'simulator'),
      failsafeRelockMs: config.FAILSAFE_RELOCK_S * 1000,
      faults,
    });
    control?.attach(fleet);
    print(
      `Simulated fleet: ${fleet.cars.size} cars connected; skipped as incompatible: ${fleet.skipped.map((s) => s.vin).join(', ') || 'none'}.`,
    );
  }

  if (config.DEMO === 'on' && fleet && booted.apiKey) {
    const vehicle = [...fleet.cars.values()][0]?.vehicle;
    const location = seeds.locations.find((l) => l.ownerId === vehicle?.ownerId) as SeedLocation | undefined;
    if (vehicle && location) {
      await playDemoDelivery({ baseUrl: booted.baseUrl, apiKey: booted.apiKey, vehicle, location, print });
      const car = fleet.car(vehicle.vin).car.snapshot();
      print(`\nThe simulated car now reports locked=${car.locked}.`);
    }
    // The console shows what the gateway knows: the rest of the fleet is linked too, and each car reports now
    // rather than at its next periodic report.
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
  }
  print(`\nConsole: ${booted.baseUrl}/console (sign in with the API key above).`);
  print('Serving. Ctrl-C stops.');
  await untilSignal();
  // Drain first, while the cars are still there to ack what is in flight; then the cars sign off
  // through the broker; then the broker and the store close.
  await booted.gateway.drain();
  await control?.close();
  await fleet?.stop();
  await booted.stop();
  await flushLogger(logger);
  process.exit(EXIT_OK);
} catch (err) {
  await control?.close();
  const known = err instanceof ConfigError || err instanceof StartupError;
  console.error(known ? (err as Error).message : `start failed: ${(err as Error).message}`);
  process.exit(EXIT_FAILED);
}

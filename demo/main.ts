// Owns `npm start`: gateway, embedded broker and the simulated fleet in one process, plus the scripted demo delivery.
// It is the one program that wires gateway/ and simulator/ together; neither imports the other.
import '../runtime.ts';
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
import { type Fleet, readFleetPki, startFleet } from '../simulator/index.ts';
import { playDemoDelivery } from './script.ts';

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

try {
  // The demo prints a human timeline on stdout; logs go to stderr at warn unless LOG_LEVEL says otherwise.
  const config = loadConfig({ env: process.env, defaults: { LOG_LEVEL: 'warn' } });
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
    });
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
  }
  print('\nServing. Ctrl-C stops.');
  await untilSignal();
  // Drain first, while the cars are still there to ack what is in flight; then the cars sign off
  // through the broker; then the broker and the store close.
  await booted.gateway.drain();
  await fleet?.stop();
  await booted.stop();
  await flushLogger(logger);
  process.exit(EXIT_OK);
} catch (err) {
  const known = err instanceof ConfigError || err instanceof StartupError;
  console.error(known ? (err as Error).message : `start failed: ${(err as Error).message}`);
  process.exit(EXIT_FAILED);
}
